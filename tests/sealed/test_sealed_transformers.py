"""The embedded SmolLM2 model, sealed, loads through transformers and generates the same tokens."""

from __future__ import annotations

from pathlib import Path

import pytest

from ccai.errors import UnsealError
from ccai.sealed import Kek, load_model, load_tokenizer, seal

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

pytestmark = [pytest.mark.slow, pytest.mark.torch]


@pytest.fixture(scope="module")
def smollm2() -> Path:
    from ccai._embedded_model import embedded_model_dir

    return embedded_model_dir()


def test_sealed_smollm2_generates_the_same_greedy_tokens(smollm2: Path, tmp_path: Path, kek: Kek) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    sealed = tmp_path / "sealed"
    seal(smollm2, sealed, kek, chunk_size=1 << 20)

    model = load_model(sealed, kek, device="cpu")
    tokenizer = load_tokenizer(sealed, kek)
    reference = AutoModelForCausalLM.from_pretrained(smollm2).eval()
    ref_tokenizer = AutoTokenizer.from_pretrained(smollm2)

    messages = [{"role": "user", "content": "What is the capital of France?"}]
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt")[
        "input_ids"
    ]
    ref_ids = ref_tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt")[
        "input_ids"
    ]
    assert torch.equal(ids, ref_ids)

    with torch.no_grad():
        sealed_out = model.generate(ids, max_new_tokens=24, do_sample=False)
        plain_out = reference.generate(ids, max_new_tokens=24, do_sample=False)
    assert torch.equal(sealed_out, plain_out)
    assert "Paris" in tokenizer.decode(sealed_out[0, ids.shape[1] :])

    ours, theirs = model.state_dict(), reference.state_dict()
    assert set(ours) == set(theirs)
    for name, tensor in theirs.items():
        assert ours[name].dtype == tensor.dtype and torch.equal(ours[name], tensor), name


def test_sealed_smollm2_with_wrong_key_builds_nothing(smollm2: Path, tmp_path: Path, kek: Kek) -> None:
    sealed = tmp_path / "sealed"
    seal(smollm2, sealed, kek)
    with pytest.raises(UnsealError):
        load_model(sealed, Kek(kid=kek.kid, key=bytes(32)), device="cpu")
    with pytest.raises(UnsealError):
        load_tokenizer(sealed, Kek(kid=kek.kid, key=bytes(32)))
