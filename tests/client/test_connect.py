"""The verifying client against a stand-in gateway on virtual hardware: the official openai SDK
completes chat completions through ``connect`` (bodies encrypted to the attested key), and the
client refuses — never sending the prompt — every document it must not trust."""

from __future__ import annotations

import anyio
import pytest

from ccai.attest import collect_composite
from ccai.client import attest_gateway, connect, connect_async
from ccai.errors import BindingError, Error, NonceMismatch, SimulatedEvidenceRejected, VerificationError
from ccai.virtual import open_virtual_vm, virtual_trust_anchors

from .conftest import WORDS, FakeGateway

PROMPT = "the confidential prompt"


def _anchors() -> object:
    return virtual_trust_anchors(gpu=True, tdx=True)


def _connect(gateway: FakeGateway, **kw: object):  # type: ignore[no-untyped-def]
    return connect(gateway.url, anchors=_anchors(), allow_simulated=True, max_retries=0, **kw)  # type: ignore[arg-type]


def test_attestation_summary(gateway: FakeGateway) -> None:
    attestation = attest_gateway(gateway.url, anchors=_anchors(), allow_simulated=True)  # type: ignore[arg-type]
    assert attestation.hpke_public_key == gateway.middleware.key.public_key
    assert attestation.simulated and len(attestation.verified.gpus) == 2
    rows = dict(attestation.summary())
    assert rows["CPU TEE"] == "tdx" and rows["GPUs"].startswith("2 × ") and "SIMULATED" in rows
    assert rows["HPKE key"] == gateway.middleware.key.public_key.hex()


def test_openai_sdk_non_streaming_and_streaming(gateway: FakeGateway) -> None:
    client = _connect(gateway)
    answer = client.chat.completions.create(model="fake", messages=[{"role": "user", "content": PROMPT}])
    assert answer.choices[0].message.content == f"echo: {PROMPT}"
    stream = client.chat.completions.create(
        model="fake", messages=[{"role": "user", "content": PROMPT}], stream=True
    )
    words = [c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content]
    assert words == WORDS
    assert [r["messages"][0]["content"] for r in gateway.api_requests] == [PROMPT, PROMPT]
    assert client.attestation.hpke_public_key == gateway.middleware.key.public_key


def test_async_openai_sdk(gateway: FakeGateway) -> None:
    async def main() -> list[str]:
        client = connect_async(gateway.url, anchors=_anchors(), allow_simulated=True, max_retries=0)  # type: ignore[arg-type]
        stream = await client.chat.completions.create(
            model="fake", messages=[{"role": "user", "content": PROMPT}], stream=True
        )
        return [c.choices[0].delta.content async for c in stream if c.choices and c.choices[0].delta.content]

    assert anyio.run(main) == WORDS


def _refused(gateway: FakeGateway, error: type[Error], **kw: object) -> Error:
    with pytest.raises(error) as raised:
        _connect(gateway, **kw)
    assert gateway.api_requests == []  # the prompt was never sent
    return raised.value


def test_wrong_nonce_is_refused(gateway: FakeGateway) -> None:
    gateway.wrong_nonce = True
    _refused(gateway, NonceMismatch)


def test_swapped_gpu_evidence_is_refused(gateway: FakeGateway) -> None:
    cpu, gpu = open_virtual_vm(tee="tdx", gpus=2, home=gateway.home)
    other = collect_composite(nonce=b"\x05" * 32, cpu=cpu, gpu=gpu)  # another collection
    gateway.swap_gpus_from = other
    _refused(gateway, VerificationError)


def test_another_key_at_hpke_keys_is_refused(gateway: FakeGateway) -> None:
    from ccai.ehbp import ServerKey

    gateway.served_key = ServerKey.generate()
    error = _refused(gateway, BindingError)
    assert "another HPKE key" in error.message


def test_simulated_evidence_refused_without_allow_simulated(gateway: FakeGateway) -> None:
    with pytest.raises(SimulatedEvidenceRejected):
        connect(gateway.url, anchors=_anchors(), max_retries=0)  # type: ignore[arg-type]
    with pytest.raises(VerificationError):  # the pinned vendor roots do not know the test PKI
        connect(gateway.url, max_retries=0)
    assert gateway.api_requests == []


def test_key_rotation_re_attests_and_succeeds(gateway: FakeGateway) -> None:
    client = _connect(gateway)
    first = client.attestation
    assert client.chat.completions.create(model="fake", messages=[{"role": "user", "content": "a"}])
    new = gateway.rotate()
    answer = client.chat.completions.create(model="fake", messages=[{"role": "user", "content": "b"}])
    assert answer.choices[0].message.content == "echo: b"
    assert client.attestation.hpke_public_key == new.public_key != first.hpke_public_key
    assert client.attestation.nonce != first.nonce  # a fresh attestation
    assert gateway.attestations == 2
    assert [r["messages"][0]["content"] for r in gateway.api_requests] == ["a", "b"]


def test_failed_re_attestation_fails_the_request(gateway: FakeGateway) -> None:
    client = _connect(gateway)
    gateway.rotate()
    gateway.wrong_nonce = True
    with pytest.raises(Exception) as raised:
        client.chat.completions.create(model="fake", messages=[{"role": "user", "content": PROMPT}])
    chain = [raised.value, raised.value.__cause__, raised.value.__context__]
    assert any(isinstance(e, NonceMismatch) for e in chain)
    assert gateway.api_requests == []
