"""The whole gateway on the embedded default: a real key broker (SQLite, loopback), the virtual TDX
guest with two virtual H100s, ``ccai serve gateway --embedded --kbs …`` sealing SmolLM2 on first use,
releasing its KEK through RCAR and serving it in process. The attestation document verifies (library
and CLI), plaintext is refused, and an EHBP request encrypted to the attested key gets the same
greedy answer as the plaintext model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from ccai.evidence import load_evidence_bundle
from ccai.verify import Verifier
from ccai.virtual import VirtualCpuTee, VirtualGpuBackend, virtual_trust_anchors

from .conftest import POLICY, Admin, running_gateway

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

pytestmark = [pytest.mark.slow, pytest.mark.torch, pytest.mark.extra("gateway")]
SRC = Path(__file__).resolve().parents[2] / "src"
RESOURCE = "models/kek/smollm2"
QUESTION = "What is the capital of France?"


def _plaintext_answer(max_tokens: int) -> str:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ccai._embedded_model import embedded_model_dir

    plain = embedded_model_dir()
    tokenizer = AutoTokenizer.from_pretrained(plain)
    model = AutoModelForCausalLM.from_pretrained(plain).eval()
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": QUESTION}], tokenize=False, add_generation_prompt=True
    )
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=max_tokens, do_sample=False)
    return str(tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True))


def test_embedded_model_behind_the_gateway(
    broker: Admin, vm: tuple[VirtualCpuTee, VirtualGpuBackend], tmp_path: Path
) -> None:
    from ccai.client import connect
    from ccai.ehbp import EhbpTransport

    del vm
    broker.policy("smollm2", POLICY, resource=RESOURCE)
    args = ["--embedded", "--kbs", broker.base, "--resource", RESOURCE, "--simulate", "tdx", "--gpus", "2"]
    with running_gateway(broker.home, *args) as gw:
        health = httpx.get(gw.url + "/health").json()
        assert health["engine"] == "transformers" and health["state"] == "ready"
        assert (broker.home / "models" / "SmolLM2-135M-Instruct.sealed").is_dir()
        assert not list((broker.home / "models").glob("*.json"))  # the KEK lives only in the broker

        # The document: fresh for our nonce, verified offline, binding the key we then encrypt to.
        nonce = os.urandom(32)
        r = httpx.get(gw.url + "/.well-known/ccai/attestation", params={"nonce": nonce.hex()}, timeout=60)
        assert r.status_code == 200, r.text
        verifier = Verifier.simulated(virtual_trust_anchors(broker.home, gpu=True, tdx=True))
        verified = verifier.verify_bundle(load_evidence_bundle(r.content), expected_nonce=nonce)
        key = load_evidence_bundle(r.content).hpke_public_key
        assert key is not None and verified.overall_claims["x-ccai-hpke-public-key"]
        doc = tmp_path / "doc.json"
        doc.write_bytes(r.content)
        env = {**os.environ, "PYTHONPATH": str(SRC), "CCAI_HOME": str(broker.home)}
        done = subprocess.run(
            [sys.executable, "-m", "ccai.cli", "verify", str(doc), "--nonce", nonce.hex(), "--offline",
             "--allow-simulated", "--json"],
            env=env, capture_output=True, text=True, check=False, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        assert json.loads(done.stdout)["result"] == "pass"

        body = {
            "model": "SmolLM2-135M-Instruct",
            "messages": [{"role": "user", "content": QUESTION}],
            "max_tokens": 16,
            "temperature": 0,
        }
        plain = httpx.post(gw.url + "/v1/chat/completions", json=body, timeout=120)
        assert plain.status_code >= 400 and "Paris" not in plain.text

        with httpx.Client(transport=EhbpTransport(key), base_url=gw.url, timeout=120) as http:
            answer = http.post("/v1/chat/completions", json=body)
            assert answer.status_code == 200, answer.text
            text = answer.json()["choices"][0]["message"]["content"]
            with http.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as stream:
                events = [line for line in stream.iter_lines() if line.startswith("data: ")]
        assert events[-1] == "data: [DONE]"
        chunks = [json.loads(e[6:])["choices"] for e in events[:-1]]
        streamed = "".join(c[0]["delta"].get("content") or "" for c in chunks if c)

        # The official openai SDK through the verifying client: attest, pin the key, encrypt.
        client = connect(gw.url, anchors=verifier.anchors, allow_simulated=True)
        assert client.attestation.hpke_public_key == key
        sdk = client.chat.completions.create(
            model="SmolLM2-135M-Instruct", messages=body["messages"], max_tokens=16, temperature=0
        )
        sdk_text = sdk.choices[0].message.content
    reference = _plaintext_answer(16)
    assert "Paris" in reference
    assert text == reference
    assert streamed == reference
    assert sdk_text == reference
