"""RCAR with Trustee's own evidence encoding: a virtual TDX guest with two virtual H100s sends
``{"primary_evidence": {"quote", …}, "additional_evidence": "{\\"nvidia\\": …}"}`` as Trustee's
attestation agent does; the broker checks the report_data commitment and the GPUs' SPDM nonce and
produces the composite path's claims, so the same resource policy releases the key."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from ccai.attest import TrusteeAttester
from ccai.kbs import KbsClient, KbsRefused, runtime_data_hash, verify_audit_chain
from ccai.kbs._jose import b64url_decode, private_jwk_pair
from ccai.kbs._trustee import device_runtime_hash, gpu_nonce, primary_report_data
from ccai.virtual import VirtualCpuTee, VirtualGpuBackend

from .conftest import POLICY, Admin

pytestmark = pytest.mark.extra("service")
KEK = b"t" * 32
# landscape.md §4: Trustee's own test vector for the runtime-data digest.
TRUSTEE_VECTOR = (
    "e71ce8e70d814ba6639c3612ebee0ff1f76f650f8dbb5e47157e0f3f525cd22c4597480a186427c813ca941da78870c3"
)


def test_runtime_data_hash_matches_trustees_vector() -> None:
    assert runtime_data_hash({"b": 1, "a": "test", "c": {"d": "e"}}).hex() == TRUSTEE_VECTOR


def test_commitments_follow_trustees_rule() -> None:
    runtime = {"nonce": "bm9uY2U=", "tee-pubkey": {"kty": "EC", "crv": "P-256", "x": "eA", "y": "eQ"}}
    device = hashlib.sha384(
        b'{"nonce":"bm9uY2U=","tee-pubkey":{"crv":"P-256","kty":"EC","x":"eA","y":"eQ"}}'
    ).digest()
    assert device_runtime_hash(runtime) == device and gpu_nonce(runtime) == device[:32]
    primary = hashlib.sha384(
        b'{"additional-evidence":"{\\"nvidia\\":1}","nonce":"bm9uY2U=",'
        b'"tee-pubkey":{"crv":"P-256","kty":"EC","x":"eA","y":"eQ"}}'
    ).digest()
    assert primary_report_data(runtime, '{"nvidia":1}') == primary + b"\0" * 16
    # Other runtime-data members do not take part (Trustee rebuilds it from nonce and tee-pubkey).
    assert device_runtime_hash({**runtime, "extra": 1}) == device


def _ready(broker: Admin) -> None:
    broker.put("models/kek/smollm2", KEK)
    broker.policy("smollm2", POLICY, resource="models/kek/smollm2")


def _token_claims(token: str) -> dict[str, Any]:
    return dict(json.loads(b64url_decode(token.split(".")[1])))


def test_virtual_tdx_guest_in_trustee_encoding_gets_the_key(
    online_broker: Admin, vm: tuple[VirtualCpuTee, VirtualGpuBackend]
) -> None:
    _ready(online_broker)
    cpu, gpu = vm
    with KbsClient(
        online_broker.base, evidence=TrusteeAttester(cpu=cpu, gpu=gpu), evidence_format="trustee"
    ) as client:
        token = client.attest()
        assert client.get_resource("models/kek/smollm2") == KEK
    claims = _token_claims(token)["ccai-claims"]
    assert claims["overall"]["x-ccai-binding"] == "trustee/rcar"
    assert claims["overall"]["x-ccai-cpu-tee"] == "tdx" and len(claims["gpus"]) == 2
    assert claims["cpu"]["x-ccai-simulated"] is True
    records = online_broker.audit()
    assert [r["event"] for r in records][-2:] == ["attest", "release"]
    assert records[-1]["verdict"] == "pass" and records[-1]["policy"] == "smollm2 v1"
    assert verify_audit_chain(records) == len(records)


def _session(base: str) -> tuple[httpx.Client, str, dict[str, Any]]:
    http = httpx.Client(base_url=base, timeout=60)
    r = http.post("/kbs/v0/auth", json={"version": "0.4.0", "tee": "tdx", "extra-params": {}})
    assert r.status_code == 200
    nonce = r.json()["nonce"]
    _key, jwk = private_jwk_pair()
    return http, nonce, {"nonce": nonce, "tee-pubkey": jwk}


def _body(
    attester: TrusteeAttester,
    runtime: dict[str, Any],
    *,
    committed: dict[str, Any] | None = None,
    gpu_digest: bytes | None = None,
) -> dict[str, Any]:
    """An attest body in Trustee's encoding; the quote commits to ``committed`` (default the
    request's runtime-data) and the GPUs signed ``gpu_digest`` (default its device digest)."""
    additional = attester.additional_evidence(gpu_digest or device_runtime_hash(runtime))
    primary = attester.primary_evidence(primary_report_data(committed or runtime, additional)[:48])
    return {
        "runtime-data": runtime,
        "tee-evidence": {"primary_evidence": primary, "additional_evidence": additional},
    }


def _refused(admin: Admin, response: httpx.Response, reason: str) -> None:
    assert response.status_code == 403, response.text
    assert response.json()["error"] == reason
    last = admin.audit()[-1]
    assert last["verdict"] == "refused" and last["reason"].startswith(reason + ":"), last


def test_report_data_not_committing_to_the_runtime_data(
    online_broker: Admin, vm: tuple[VirtualCpuTee, VirtualGpuBackend]
) -> None:
    _ready(online_broker)
    attester = TrusteeAttester(cpu=vm[0], gpu=vm[1])
    http, _nonce, runtime = _session(online_broker.base)
    # The quote commits to another tee-pubkey than the one the request names.
    _other, other_jwk = private_jwk_pair()
    body = _body(attester, runtime, committed={**runtime, "tee-pubkey": other_jwk})
    r = http.post("/kbs/v0/attest", json=body)
    _refused(online_broker, r, "tee_pubkey_not_committed")


def test_gpu_evidence_from_another_run_is_refused(
    online_broker: Admin, vm: tuple[VirtualCpuTee, VirtualGpuBackend]
) -> None:
    _ready(online_broker)
    attester = TrusteeAttester(cpu=vm[0], gpu=vm[1])
    http, _nonce, runtime = _session(online_broker.base)
    # GPU reports made for another run's runtime-data, relayed by a guest whose quote honestly
    # commits to them: the report_data matches, the GPUs' signed SPDM nonce does not.
    r = http.post("/kbs/v0/attest", json=_body(attester, runtime, gpu_digest=os.urandom(48)))
    _refused(online_broker, r, "gpu_evidence_not_bound")


def test_wrong_nonce_and_replayed_challenge(
    online_broker: Admin, vm: tuple[VirtualCpuTee, VirtualGpuBackend]
) -> None:
    _ready(online_broker)
    attester = TrusteeAttester(cpu=vm[0], gpu=vm[1])
    http, _nonce, runtime = _session(online_broker.base)
    wrong = {**runtime, "nonce": base64.b64encode(os.urandom(32)).decode()}
    _refused(online_broker, http.post("/kbs/v0/attest", json=_body(attester, wrong)), "nonce_mismatch")
    # The challenge was spent by that attempt: the right evidence on the same session is a replay.
    body = _body(attester, runtime)
    _refused(online_broker, http.post("/kbs/v0/attest", json=body), "challenge_replayed")
    # Evidence for the old challenge on a fresh session: the nonce in runtime-data is not its own.
    http2, _nonce2, _runtime2 = _session(online_broker.base)
    _refused(online_broker, http2.post("/kbs/v0/attest", json=body), "nonce_mismatch")


def test_debug_td_in_trustee_encoding_is_refused(online_broker: Admin, ccai_home: Path) -> None:
    _ready(online_broker)
    cpu = VirtualCpuTee.create(home=ccai_home, tee="tdx", debug=True)
    gpu = VirtualGpuBackend.open(ccai_home)
    client = KbsClient(
        online_broker.base, evidence=TrusteeAttester(cpu=cpu, gpu=gpu), evidence_format="trustee"
    )
    with client, pytest.raises(KbsRefused) as info:
        client.attest()
    assert info.value.status == 403 and info.value.reason == "debug_tee"
    assert online_broker.audit()[-1]["reason"].startswith("debug_tee:")


def test_malformed_trustee_evidence_is_a_400(online_broker: Admin) -> None:
    http, _nonce, runtime = _session(online_broker.base)
    r = http.post(
        "/kbs/v0/attest",
        json={"runtime-data": runtime, "tee-evidence": {"primary_evidence": {"quote": "!!"}}},
    )
    assert r.status_code == 400 and r.json()["error"] == "malformed_evidence"
    http, _nonce, runtime = _session(online_broker.base)
    r = http.post(
        "/kbs/v0/attest",
        json={
            "runtime-data": runtime,
            "tee-evidence": {"primary_evidence": {"quote": "AAAA"}, "additional_evidence": '{"amd": {}}'},
        },
    )
    assert r.status_code == 400 and r.json()["error"] == "malformed_evidence"


def test_client_refuses_a_mismatched_evidence_format(vm: tuple[VirtualCpuTee, VirtualGpuBackend]) -> None:
    from ccai.errors import UsageError

    with pytest.raises(UsageError):
        KbsClient("http://127.0.0.1:9", evidence=TrusteeAttester(cpu=vm[0], gpu=vm[1]))
    with pytest.raises(UsageError):
        KbsClient("http://127.0.0.1:9", evidence=lambda n, k: b"", evidence_format="trustee")
