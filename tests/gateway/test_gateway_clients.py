"""Clients against a real ``ccai serve gateway --embedded`` (virtual TDX + 2 virtual H100s, the KEK from a
real key broker): Tinfoil's own Python client (``tinfoil-ehbp`` 0.4.1, ``ehbp.Client.discover``)
completes a streaming and a non-streaming chat completion and decrypts both; after the gateway
rotates its HPKE key (SIGHUP), a request encrypted to the old key gets EHBP's 422 key-config problem
and ``ccai.client.connect``'s client re-attests and succeeds."""

from __future__ import annotations

import json
import signal
import time

import httpx
import pytest
from tests.ehbp.tinfoil import run_tinfoil_client, tinfoil_python

from ccai.virtual import VirtualCpuTee, VirtualGpuBackend, virtual_trust_anchors

from .conftest import POLICY, QUESTION, Admin, Gateway, plaintext_answer, running_gateway

pytest.importorskip("torch")
pytest.importorskip("transformers")

pytestmark = [pytest.mark.slow, pytest.mark.torch, pytest.mark.extra("gateway")]
RESOURCE = "models/kek/smollm2"
MODEL = "SmolLM2-135M-Instruct"


def _embedded_args(broker: Admin) -> list[str]:
    broker.policy("smollm2", POLICY, resource=RESOURCE)
    return ["--embedded", "--kbs", broker.base, "--resource", RESOURCE, "--simulate", "tdx", "--gpus", "2"]


def _served_key(gw: Gateway) -> bytes:
    from ccai.ehbp import fetch_key_config

    return fetch_key_config(gw.url).public_key


def test_tinfoil_client_against_the_gateway(
    broker: Admin, vm: tuple[VirtualCpuTee, VirtualGpuBackend], request: pytest.FixtureRequest
) -> None:
    del vm
    python = tinfoil_python(request.config)
    body = {"model": MODEL, "messages": [{"role": "user", "content": QUESTION}], "max_tokens": 16}
    with running_gateway(broker.home, *_embedded_args(broker)) as gw:
        report = run_tinfoil_client(
            python, gw.url, "/v1/chat/completions", body, "/v1/chat/completions", {**body, "stream": True}
        )
        assert report["public_key"] == _served_key(gw).hex()
    reference = plaintext_answer(16)
    assert "Paris" in reference
    assert report["status"] == 200 and len(report["nonce"]) == 64
    assert json.loads(report["body"])["choices"][0]["message"]["content"] == reference
    assert report["stream_status"] == 200 and len(report["stream_nonce"]) == 64
    events = [e for e in "".join(report["chunks"]).split("\n\n") if e.startswith("data: ")]
    assert events[-1] == "data: [DONE]"
    deltas = [json.loads(e[6:])["choices"] for e in events[:-1]]
    assert "".join(c[0]["delta"].get("content") or "" for c in deltas if c) == reference
    assert len(report["chunks"]) > 2  # decrypted event by event as they arrived
    # A key the gateway never had: Tinfoil's client gets the 422 problem as KeyConfigMismatchError.
    assert report["stale_key"] is not None and "KEY_CONFIG_MISMATCH" in report["stale_key"].upper()


def test_key_rotation_stale_key_gets_422_and_the_client_reattests(
    broker: Admin, vm: tuple[VirtualCpuTee, VirtualGpuBackend]
) -> None:
    from ccai.client import connect
    from ccai.ehbp import EhbpTransport, KeyConfigMismatch

    del vm
    anchors = virtual_trust_anchors(broker.home, gpu=True, tdx=True)
    body = {"model": MODEL, "messages": [{"role": "user", "content": QUESTION}], "max_tokens": 8}
    with running_gateway(broker.home, *_embedded_args(broker)) as gw:
        client = connect(gw.url, anchors=anchors, allow_simulated=True, max_retries=0)
        old = client.attestation.hpke_public_key
        first = client.chat.completions.create(
            model=MODEL, messages=body["messages"], max_tokens=8, temperature=0
        )

        gw.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while _served_key(gw) == old:
            assert time.monotonic() < deadline, "the gateway did not rotate its key"
            time.sleep(0.05)
        new = _served_key(gw)

        # A request encrypted to the old key: EHBP's 422 key-config problem, never an answer.
        stale = httpx.Client(transport=EhbpTransport(old), base_url=gw.url, timeout=60)
        with stale, pytest.raises(KeyConfigMismatch):
            stale.post("/v1/chat/completions", json=body)
        raw = httpx.post(
            gw.url + "/v1/chat/completions",
            content=b"\x00\x00\x00\x10" + b"\x00" * 16,
            headers={"Ehbp-Encapsulated-Key": old.hex(), "Content-Type": "application/json"},
        )
        assert raw.status_code == 422
        assert raw.headers["content-type"].startswith("application/problem+json")
        assert raw.json()["type"] == "urn:ietf:params:ehbp:error:key-config"

        # The verifying client: 422 → a fresh attestation of the new key → the request goes through.
        second = client.chat.completions.create(
            model=MODEL, messages=body["messages"], max_tokens=8, temperature=0
        )
        assert client.attestation.hpke_public_key == new != old
        # The attestation document binds the current key.
        from ccai.client import attest_gateway

        assert attest_gateway(gw.url, anchors=anchors, allow_simulated=True).hpke_public_key == new
        client.close()
    assert second.choices[0].message.content == first.choices[0].message.content
    assert "Paris" in (first.choices[0].message.content or "")
