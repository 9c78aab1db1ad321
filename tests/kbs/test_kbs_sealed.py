"""Sealed models meet the broker: ``ccai seal --kbs`` stores the KEK in the broker; a virtual TDX
guest with two virtual H100s fetches it through RCAR (``ccai.kbs.BrokerKey``, a
``ccai.sealed.KeySource``) and the sealed model opens with no key file anywhere."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ccai.attest import TrusteeAttester
from ccai.kbs import BrokerKey, KbsRefused
from ccai.sealed import KeySource, read_file, read_manifest
from ccai.virtual import VirtualCpuTee, VirtualFault, VirtualGpuBackend

from .conftest import POLICY, Admin, make_evidence

pytestmark = pytest.mark.extra("service")
SRC = Path(__file__).resolve().parents[2] / "src"
RESOURCE = "models/kek/tiny"


def _ccai(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(SRC), "CCAI_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "ccai.cli", *args, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _tiny_model(root: Path) -> Path:
    model = root / "tiny"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 8}))
    (model / "weights.bin").write_bytes(os.urandom(70_000))
    return model


def _seal(broker: Admin, tmp_path: Path, resource: str = RESOURCE) -> tuple[Path, Path]:
    plain, sealed = _tiny_model(tmp_path), tmp_path / "tiny.sealed"
    done = _ccai(
        broker.home, "seal", str(plain), "-o", str(sealed), "--kbs", broker.base, "--resource", resource
    )
    assert done.returncode == 0, done.stderr
    return plain, sealed


def test_broker_key_is_a_key_source_and_opens_the_sealed_model(
    broker: Admin, vm: tuple[VirtualCpuTee, VirtualGpuBackend], tmp_path: Path
) -> None:
    plain, sealed = _seal(broker, tmp_path)
    assert not list(broker.home.glob("*.jwk")) and not list(tmp_path.glob("*kek*"))  # no key file
    key = BrokerKey(url=broker.base, resource=RESOURCE, evidence=make_evidence(*vm))
    assert isinstance(key, KeySource)
    # Default deny: without a policy the broker refuses and nothing opens.
    with pytest.raises(KbsRefused) as info:
        read_manifest(sealed, key)
    assert info.value.reason == "no_policy"
    broker.policy("tiny", POLICY, resource=RESOURCE)
    manifest = read_manifest(sealed, key)
    assert {f.name for f in manifest.files} == {"config.json", "weights.bin"}
    assert read_file(sealed, key, "weights.bin") == (plain / "weights.bin").read_bytes()
    releases = [r for r in broker.audit() if r["event"] == "release" and r["verdict"] == "pass"]
    assert len(releases) == 2  # one attested release per opening; the KEK is never cached


def test_broker_key_in_trustee_encoding(
    online_broker: Admin, vm: tuple[VirtualCpuTee, VirtualGpuBackend], tmp_path: Path
) -> None:
    plain, sealed = _seal(online_broker, tmp_path)
    online_broker.policy("tiny", POLICY, resource=RESOURCE)
    key = BrokerKey(
        url=online_broker.base,
        resource=RESOURCE,
        evidence=TrusteeAttester(cpu=vm[0], gpu=vm[1]),
        evidence_format="trustee",
    )
    assert read_file(sealed, key, "weights.bin") == (plain / "weights.bin").read_bytes()


def test_a_refused_guest_opens_nothing(
    broker: Admin, vm: tuple[VirtualCpuTee, VirtualGpuBackend], tmp_path: Path
) -> None:
    _plain, sealed = _seal(broker, tmp_path)
    broker.policy("tiny", POLICY, resource=RESOURCE)
    vm[1].inject_fault(VirtualFault.MEASUREMENT_DRIFT)
    with pytest.raises(KbsRefused) as info:
        read_manifest(sealed, BrokerKey(url=broker.base, resource=RESOURCE, evidence=make_evidence(*vm)))
    assert info.value.reason == "measurement_mismatch"


def test_cli_unseal_and_inspect_with_the_broker(
    broker: Admin, vm: tuple[VirtualCpuTee, VirtualGpuBackend], tmp_path: Path
) -> None:
    del vm
    plain, sealed = _seal(broker, tmp_path)
    broker.policy("tiny", POLICY, resource=RESOURCE)
    kbs = ["--kbs", broker.base, "--resource", RESOURCE, "--simulate", "tdx", "--gpus", "2"]
    done = _ccai(broker.home, "sealed", "inspect", str(sealed), *kbs)
    assert done.returncode == 0, done.stderr
    assert {f["name"] for f in json.loads(done.stdout)["files"]} == {"config.json", "weights.bin"}
    out = tmp_path / "out"
    done = _ccai(broker.home, "unseal", str(sealed), "-o", str(out), "--force-disk", *kbs)
    assert done.returncode == 0, done.stderr
    assert (out / "weights.bin").read_bytes() == (plain / "weights.bin").read_bytes()
    out2 = tmp_path / "out2"
    done = _ccai(
        broker.home,
        "unseal",
        str(sealed),
        "-o",
        str(out2),
        "--force-disk",
        *kbs,
        "--evidence-format",
        "trustee",
    )
    # The offline test broker has no Intel PCS for a Trustee-encoded quote: refused, nothing written.
    assert done.returncode != 0 and not out2.exists()
    # --kek and --kbs together, or --resource alone, are usage errors.
    assert _ccai(broker.home, "unseal", str(sealed), "-o", str(out2), "--resource", RESOURCE).returncode == 2
    bad = _ccai(broker.home, "unseal", str(sealed), "-o", str(out2), "--kek", "x", "--kbs", broker.base)
    assert bad.returncode == 2


@pytest.mark.slow
@pytest.mark.torch
def test_sealed_smollm2_loads_with_its_kek_in_the_broker(
    broker: Admin, vm: tuple[VirtualCpuTee, VirtualGpuBackend], tmp_path: Path
) -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ccai._embedded_model import embedded_model_dir
    from ccai.sealed import load_model, load_tokenizer

    plain = embedded_model_dir()
    sealed = tmp_path / "m.sealed"
    done = _ccai(
        broker.home,
        "seal",
        str(plain),
        "-o",
        str(sealed),
        "--kbs",
        broker.base,
        "--resource",
        "models/kek/smollm2",
    )
    assert done.returncode == 0, done.stderr
    broker.policy("smollm2", POLICY, resource="models/kek/smollm2")

    key = BrokerKey(url=broker.base, resource="models/kek/smollm2", evidence=make_evidence(*vm))
    model = load_model(sealed, key, device="cpu")
    tokenizer = load_tokenizer(sealed, key)
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
    # load_model asked the broker once (manifest and weights share the key), load_tokenizer once.
    releases = [r for r in broker.audit() if r["event"] == "release" and r["verdict"] == "pass"]
    assert len(releases) == 2
