"""Sealed models meet the broker: ``ccai seal --kbs`` stores the KEK in the broker; a virtual TDX
guest with two virtual H100s fetches it through RCAR and the sealed SmolLM2 generates the same
greedy tokens as the plaintext model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ccai.kbs import fetch_kek
from ccai.virtual import VirtualCpuTee, VirtualGpuBackend

from .conftest import POLICY, Admin, make_evidence

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

pytestmark = [pytest.mark.slow, pytest.mark.torch, pytest.mark.extra("service")]
SRC = Path(__file__).resolve().parents[2] / "src"


def test_sealed_smollm2_with_its_kek_in_the_broker(
    broker: Admin, vm: tuple[VirtualCpuTee, VirtualGpuBackend], tmp_path: Path
) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ccai._embedded_model import embedded_model_dir
    from ccai.sealed import load_model, load_tokenizer

    plain = embedded_model_dir()
    sealed = tmp_path / "m.sealed"
    env = {**os.environ, "PYTHONPATH": str(SRC), "CCAI_HOME": str(broker.home)}
    done = subprocess.run(
        [sys.executable, "-m", "ccai.cli", "seal", str(plain), "-o", str(sealed), "--kbs", broker.base,
         "--resource", "models/kek/smollm2", "--json"],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    broker.policy("smollm2", POLICY, resource="models/kek/smollm2")

    kek = fetch_kek(broker.base, "models/kek/smollm2", evidence=make_evidence(*vm))
    model = load_model(sealed, kek, device="cpu")
    tokenizer = load_tokenizer(sealed, kek)
    reference = AutoModelForCausalLM.from_pretrained(plain).eval()
    ids = AutoTokenizer.from_pretrained(plain).apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        return_tensors="pt",
    )["input_ids"]
    with torch.no_grad():
        sealed_out = model.generate(ids, max_new_tokens=24, do_sample=False)
        plain_out = reference.generate(ids, max_new_tokens=24, do_sample=False)
    assert torch.equal(sealed_out, plain_out)
    assert "Paris" in tokenizer.decode(sealed_out[0, ids.shape[1] :])
