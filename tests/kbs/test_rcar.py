"""RCAR end to end over a real socket: a virtual TDX guest with two virtual H100s gets the key;
every refusal is a 403 with its named reason in the hash-chained audit log."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import pytest
from jwcrypto import jwe as jose_jwe
from jwcrypto import jwk as jose_jwk

from ccai.device import CcMode
from ccai.evidence import load_evidence_bundle
from ccai.kbs import KbsClient, KbsRefused, runtime_data_hash, verify_audit_chain
from ccai.kbs._jose import private_jwk_pair
from ccai.virtual import VirtualCpuTee, VirtualFault, VirtualGpuBackend

from .conftest import POLICY, Admin, broker_app, make_evidence, serve

pytestmark = pytest.mark.extra("service")
KEK = b"k" * 32


def _ready(broker: Admin) -> None:
    broker.put("models/kek/smollm2", KEK)
    broker.policy("smollm2", POLICY, resource="models/kek/smollm2")


def test_virtual_tdx_guest_gets_the_key(broker: Admin, vm: tuple[VirtualCpuTee, VirtualGpuBackend]) -> None:
    _ready(broker)
    with KbsClient(broker.base, evidence=make_evidence(*vm)) as client:
        assert client.get_resource("models/kek/smollm2") == KEK
    records = broker.audit()
    assert [r["event"] for r in records][-2:] == ["attest", "release"]
    assert records[-1]["verdict"] == "pass" and records[-1]["policy"] == "smollm2 v1"
    assert verify_audit_chain(records) == len(records)


def _refusal(
    broker: Admin, vm: tuple[VirtualCpuTee, VirtualGpuBackend], reason: str, *, devtools: bool = False
) -> None:
    client = KbsClient(broker.base, evidence=make_evidence(*vm), devtools=devtools)
    with client, pytest.raises(KbsRefused) as info:
        client.get_resource("models/kek/smollm2")
    assert info.value.status == 403 and info.value.reason == reason  # the 403 body names it
    last = broker.audit()[-1]
    assert last["verdict"] == "refused"
    assert last["reason"].startswith(reason + ":"), last["reason"]  # and so does the audit log


def test_devtools_on_is_refused(broker: Admin, vm: tuple[VirtualCpuTee, VirtualGpuBackend]) -> None:
    _ready(broker)
    vm[1].set_cc_mode(CcMode.DEVTOOLS)
    # The guest's driver reports DevTools (unsigned): the broker names the refusal the signed
    # measurements caused after it.
    _refusal(broker, vm, "devtools_on", devtools=vm[1].status().devtools)
    # Without the report the same evidence is refused on its measurements alone.
    _refusal(broker, vm, "measurement_mismatch")


def test_devtools_report_does_not_rename_a_passing_or_other_refusal(
    broker: Admin, vm: tuple[VirtualCpuTee, VirtualGpuBackend]
) -> None:
    _ready(broker)
    # A DevTools report on a healthy GPU changes nothing: it is a hint, never a claim.
    with KbsClient(broker.base, evidence=make_evidence(*vm), devtools=True) as client:
        assert client.get_resource("models/kek/smollm2") == KEK


def test_measurement_drift_is_refused(broker: Admin, vm: tuple[VirtualCpuTee, VirtualGpuBackend]) -> None:
    _ready(broker)
    vm[1].inject_fault(VirtualFault.MEASUREMENT_DRIFT)
    _refusal(broker, vm, "measurement_mismatch")


def test_debug_tdx_is_refused(broker: Admin, ccai_home: Path) -> None:
    _ready(broker)
    cpu = VirtualCpuTee.create(home=ccai_home, tee="tdx", debug=True)
    gpu = VirtualGpuBackend.open(ccai_home)
    _refusal(broker, (cpu, gpu), "debug_tee")


def _session(base: str) -> tuple[httpx.Client, str]:
    http = httpx.Client(base_url=base, timeout=60)
    r = http.post("/kbs/v0/auth", json={"version": "0.4.0", "tee": "tdx", "extra-params": {}})
    assert r.status_code == 200 and "kbs-session-id" in r.cookies
    return http, r.json()["nonce"]


def test_swapped_gpu_evidence_is_refused(broker: Admin, vm: tuple[VirtualCpuTee, VirtualGpuBackend]) -> None:
    _ready(broker)
    other = load_evidence_bundle(make_evidence(*vm)(b"\x05" * 32, b"\x00" * 48))
    client = KbsClient(broker.base, evidence=make_evidence(*vm, gpus_from=other))
    with client, pytest.raises(KbsRefused) as info:
        client.attest()
    assert info.value.status == 403 and info.value.reason == "gpu_evidence_not_bound"
    last = broker.audit()[-1]
    assert last["verdict"] == "refused" and last["reason"].startswith("gpu_evidence_not_bound:"), last


def test_replayed_challenge_and_other_tee_pubkey(
    broker: Admin, vm: tuple[VirtualCpuTee, VirtualGpuBackend]
) -> None:
    _ready(broker)
    evidence = make_evidence(*vm)
    http, nonce = _session(broker.base)
    _key, jwk = private_jwk_pair()
    runtime = {"nonce": nonce, "tee-pubkey": jwk}
    bundle = json.loads(evidence(base64.b64decode(nonce), runtime_data_hash(runtime)))
    # A tee-pubkey other than the committed one.
    _other, other_jwk = private_jwk_pair()
    r = http.post(
        "/kbs/v0/attest",
        json={"runtime-data": {"nonce": nonce, "tee-pubkey": other_jwk}, "tee-evidence": bundle},
    )
    assert r.status_code == 403 and r.json()["error"] == "tee_pubkey_not_committed"
    assert broker.audit()[-1]["reason"].startswith("tee_pubkey_not_committed")
    # The same challenge again (even with the right key) is a replay.
    r = http.post("/kbs/v0/attest", json={"runtime-data": runtime, "tee-evidence": bundle})
    assert r.status_code == 403 and r.json()["error"] == "challenge_replayed"
    assert broker.audit()[-1]["reason"].startswith("challenge_replayed")
    # Recorded evidence for an old challenge on a new session: the nonce does not match.
    http2, nonce2 = _session(broker.base)
    runtime2 = {"nonce": nonce2, "tee-pubkey": jwk}
    r = http2.post("/kbs/v0/attest", json={"runtime-data": runtime2, "tee-evidence": bundle})
    assert r.status_code == 403 and r.json()["error"] == "tee_pubkey_not_committed"


def test_simulated_evidence_on_a_production_broker(
    ccai_home: Path, vm: tuple[VirtualCpuTee, VirtualGpuBackend]
) -> None:
    with serve(broker_app(ccai_home, simulated=False)) as base:
        admin = Admin(base, ccai_home)
        with KbsClient(base, evidence=make_evidence(*vm)) as client, pytest.raises(KbsRefused) as info:
            client.attest()
        assert info.value.status == 403 and info.value.reason == "simulated_evidence_rejected"
        assert admin.audit()[-1]["reason"].startswith("simulated_evidence_rejected")


def test_jwe_decrypts_with_jwcrypto_and_only_the_tee_key(
    broker: Admin, vm: tuple[VirtualCpuTee, VirtualGpuBackend]
) -> None:
    _ready(broker)
    client = KbsClient(broker.base, evidence=make_evidence(*vm))
    token = client.attest()
    r = httpx.get(
        f"{broker.base}/kbs/v0/resource/models/kek/smollm2", headers={"Authorization": f"Bearer {token}"}
    )
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"protected", "encrypted_key", "iv", "ciphertext", "tag"}
    key = client._key
    assert key is not None
    from cryptography.hazmat.primitives import serialization

    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    token_obj = jose_jwe.JWE()
    token_obj.deserialize(json.dumps(body), key=jose_jwk.JWK.from_pem(pem))
    assert token_obj.payload == KEK
    stranger, _ = private_jwk_pair()
    spem = stranger.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(Exception):  # noqa: B017 - jwcrypto raises its own InvalidJWEData
        jose_jwe.JWE().deserialize(json.dumps(body), key=jose_jwk.JWK.from_pem(spem))
    # A token with its signature broken, no token, unknown resource, no policy.
    assert (
        httpx.get(
            f"{broker.base}/kbs/v0/resource/models/kek/smollm2",
            headers={"Authorization": f"Bearer {token[:-4]}AAAA"},
        ).status_code
        == 401
    )
    assert httpx.get(f"{broker.base}/kbs/v0/resource/models/kek/smollm2").status_code == 401
    assert (
        httpx.get(
            f"{broker.base}/kbs/v0/resource/models/kek/none", headers={"Authorization": f"Bearer {token}"}
        ).status_code
        == 404
    )
    broker.put("models/kek/unguarded", b"x")
    r = httpx.get(
        f"{broker.base}/kbs/v0/resource/models/kek/unguarded", headers={"Authorization": f"Bearer {token}"}
    )
    assert r.status_code == 403 and r.json()["error"] == "no_policy"
    client.close()


def test_audit_tamper_is_detected(broker: Admin, vm: tuple[VirtualCpuTee, VirtualGpuBackend]) -> None:
    import sqlite3

    _ready(broker)
    with KbsClient(broker.base, evidence=make_evidence(*vm)) as client:
        client.get_resource("models/kek/smollm2")
    records = broker.audit()
    verify_audit_chain(records)
    db = sqlite3.connect(broker.home / "kbs.db")
    db.execute("UPDATE kbs_audit SET verdict='pass', reason='x' WHERE seq=2")
    db.commit()
    from ccai.errors import VerificationError

    with pytest.raises(VerificationError, match="record 2"):
        verify_audit_chain(broker.audit())
    db.execute("DELETE FROM kbs_audit WHERE seq=2")
    db.commit()
    with pytest.raises(VerificationError, match="missing"):
        verify_audit_chain(broker.audit())
