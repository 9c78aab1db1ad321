"""Fail-closed boot: the gateway serves only after attestation and key release, and any failure —
the broker refuses, the sealed model is broken, the engine does not start, no TEE — ends the process
with a non-zero exit code and the reason, without ever answering an inference request with 200."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx
import pytest

from ccai.device import CcMode
from ccai.sealed import Kek, kek_to_jwk
from ccai.virtual import VirtualCpuTee, VirtualGpuBackend

from .conftest import POLICY, UPSTREAM_CMD, Admin, failing_gateway, running_gateway

pytestmark = [pytest.mark.extra("service")]
RESOURCE = "models/kek/tiny"


def _kbs_args(broker: Admin, sealed: Path, *extra: str) -> list[str]:
    return [
        "--model", str(sealed), "--kbs", broker.base, "--resource", RESOURCE, "--simulate", "tdx",
        "--upstream-cmd", UPSTREAM_CMD, "--allow-plaintext", *extra,
    ]  # fmt: skip


def _error(run_stdout: str) -> dict[str, object]:
    doc = json.loads(run_stdout)  # exactly one JSON document on stdout
    assert doc["result"] == "error"
    return dict(doc["error"])


def test_key_released_through_rcar(
    broker: Admin, vm: tuple[VirtualCpuTee, VirtualGpuBackend], tiny_sealed: tuple[Path, Path, Kek]
) -> None:
    sealed, _, kek = tiny_sealed
    broker.put(RESOURCE, kek_to_jwk(kek))
    broker.policy("tiny", POLICY, resource=RESOURCE)
    with running_gateway(broker.home, *_kbs_args(broker, sealed)) as gw:
        assert httpx.get(gw.url + "/v1/models").json()["data"][0]["files"][0] == "config.json"
        assert VirtualGpuBackend.open(broker.home).status().gpus_ready  # set once the key was released
    releases = [r for r in broker.audit() if r["event"] == "release"]
    assert releases and releases[-1]["verdict"] == "pass" and releases[-1]["resource"] == RESOURCE


def test_broker_refusal_devtools_gpu(
    broker: Admin, vm: tuple[VirtualCpuTee, VirtualGpuBackend], tiny_sealed: tuple[Path, Path, Kek]
) -> None:
    sealed, _, kek = tiny_sealed
    broker.put(RESOURCE, kek_to_jwk(kek))
    broker.policy("tiny", POLICY, resource=RESOURCE)
    vm[1].set_cc_mode(CcMode.DEVTOOLS)  # the gateway's GPUs are in DevTools mode: no key for it
    run = failing_gateway(broker.home, *_kbs_args(broker, sealed))
    assert run.returncode == 1, run.stderr
    assert "fetching-key" in run.stderr and "key broker refused" in run.stderr
    assert _error(run.stdout)["exit_code"] == 1
    assert 200 not in run.inference_statuses
    assert not VirtualGpuBackend.open(broker.home).status().gpus_ready


def test_broker_refusal_without_policy(
    broker: Admin, vm: tuple[VirtualCpuTee, VirtualGpuBackend], tiny_sealed: tuple[Path, Path, Kek]
) -> None:
    del vm
    sealed, _, kek = tiny_sealed
    broker.put(RESOURCE, kek_to_jwk(kek))  # no policy: default deny
    run = failing_gateway(broker.home, *_kbs_args(broker, sealed))
    assert run.returncode == 1 and "no_policy" in run.stderr, run.stderr
    assert 200 not in run.inference_statuses


def test_broken_sealed_model(ccai_home: Path, tiny_sealed: tuple[Path, Path, Kek]) -> None:
    sealed, kek_file, _ = tiny_sealed
    blob = max((p for p in sealed.iterdir() if p.is_file()), key=lambda p: p.stat().st_size)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0x01
    blob.write_bytes(bytes(data))
    before = set(Path("/dev/shm").glob("ccai-gateway-*"))
    run = failing_gateway(
        ccai_home, "--model", str(sealed), "--kek", str(kek_file), "--simulate", "tdx", "--gpus", "2",
        "--upstream-cmd", UPSTREAM_CMD, "--allow-plaintext",
    )  # fmt: skip
    assert run.returncode == 1, run.stderr
    assert "loading-model" in run.stderr and _error(run.stdout)["class"] == "UnsealError"
    assert 200 not in run.inference_statuses
    assert set(Path("/dev/shm").glob("ccai-gateway-*")) == before  # nothing partial left in RAM


def test_engine_that_does_not_start(ccai_home: Path, tiny_sealed: tuple[Path, Path, Kek]) -> None:
    sealed, kek_file, _ = tiny_sealed
    before = set(Path("/dev/shm").glob("ccai-gateway-*"))
    run = failing_gateway(
        ccai_home, "--model", str(sealed), "--kek", str(kek_file), "--simulate", "tdx", "--gpus", "2",
        "--upstream-cmd", "false {model_dir} {port}", "--allow-plaintext",
    )  # fmt: skip
    assert run.returncode == 4, run.stderr
    assert "starting-engine" in run.stderr and "exited with status 1" in run.stderr
    assert _error(run.stdout)["class"] == "EngineStartError"
    assert 200 not in run.inference_statuses
    assert set(Path("/dev/shm").glob("ccai-gateway-*")) == before


def test_plaintext_weights_never_go_to_disk(
    ccai_home: Path, tiny_sealed: tuple[Path, Path, Kek], tmp_path: Path
) -> None:
    sealed, kek_file, _ = tiny_sealed
    run = failing_gateway(
        ccai_home, "--model", str(sealed), "--kek", str(kek_file), "--simulate", "tdx",
        "--upstream-cmd", UPSTREAM_CMD, "--unseal-dir", str(tmp_path / "disk"),
    )  # fmt: skip
    assert run.returncode == 2 and "not a RAM-backed" in run.stderr, run.stderr
    assert not (tmp_path / "disk").exists()


def test_real_hardware_missing_is_exit_4(ccai_home: Path, tiny_sealed: tuple[Path, Path, Kek]) -> None:
    sealed, kek_file, _ = tiny_sealed
    run = failing_gateway(
        ccai_home, "--model", str(sealed), "--kek", str(kek_file), "--upstream-cmd", UPSTREAM_CMD
    )
    assert run.returncode == 4, run.stderr
    assert "collecting-evidence" in run.stderr
    assert 200 not in run.inference_statuses


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--kek", "k.json", "--kbs", "http://127.0.0.1:1"], "exactly one"),
        (["--kbs", "http://127.0.0.1:1"], "--resource"),
        (["--kek", "k.json", "--simulate", "sgx"], "tdx or snp"),
        (["--kek", "k.json", "--engine", "vllm"], "--engine takes transformers"),
        (["--kek", "k.json", "--upstream-cmd", "vllm serve"], "{model_dir} and {port}"),
    ],
)
def test_bad_options_are_usage_errors(
    ccai_home: Path, tiny_sealed: tuple[Path, Path, Kek], args: list[str], message: str
) -> None:
    sealed, _, _ = tiny_sealed
    argv = [a.replace("k.json", str(tiny_sealed[1])) for a in args]
    if "--upstream-cmd" not in argv and "--engine" not in argv:
        argv += ["--upstream-cmd", UPSTREAM_CMD]
    run = failing_gateway(ccai_home, "--model", str(sealed), "--simulate", "tdx", *argv)
    assert run.returncode == 2, run.stderr
    assert message in run.stderr
    assert sys.executable  # the argv above ran the real entry point
