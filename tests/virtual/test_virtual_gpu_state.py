"""The virtual CC GPU's control plane: state file, setters, status."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from ccai.device import (
    Architecture,
    CcMode,
    CpuCcCapability,
    GpuBackend,
    MultiGpuMode,
)
from ccai.errors import DeviceNotSupported, UsageError
from ccai.virtual import VirtualFault, VirtualGpuBackend


def test_open_creates_the_default_system(ccai_home: Path) -> None:
    backend = VirtualGpuBackend.open()
    assert isinstance(backend, GpuBackend)
    status = backend.status()
    assert status.simulated is True
    assert status.environment == "simulated"
    assert status.cc_feature is True
    assert status.devtools is False
    assert status.gpus_ready is False
    assert status.driver_version == "570.124.06"
    assert status.multi_gpu_mode is MultiGpuMode.NONE
    assert [g.name for g in status.gpus] == ["NVIDIA H100 80GB HBM3"]
    assert status.gpus[0].architecture is Architecture.HOPPER
    assert status.gpus[0].uuid.startswith("GPU-")
    assert (ccai_home / "virtual-gpu.json").is_file()


def test_state_file_is_private_json(ccai_home: Path) -> None:
    VirtualGpuBackend.create(gpus=2)
    path = ccai_home / "virtual-gpu.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = json.loads(path.read_text())
    assert data["gpus"] == 2
    assert data["mode"] == "on"
    assert not list(ccai_home.glob(".virtual-gpu.json.*")), "no temporary files left behind"


def test_changes_persist_across_opens() -> None:
    first = VirtualGpuBackend.create(gpus=4, architecture=Architecture.BLACKWELL, driver_version="575.32")
    first.set_ready(True)
    first.set_unprotected_memory(2, 4 * 1024 * 1024 * 1024)
    first.set_key_rotation_threshold(60)
    first.inject_fault(VirtualFault.WRONG_NONCE)

    again = VirtualGpuBackend.open()
    status = again.status()
    assert status.gpus_ready is True
    assert status.key_rotation_threshold == 60
    assert status.driver_version == "575.32"
    assert len(status.gpus) == 4
    assert status.gpus[0].name == "NVIDIA B200"
    assert status.gpus[2].unprotected_memory_total == 4 * 1024**3
    assert status.gpus[2].protected_memory_total == again.model.memory_total - 4 * 1024**3
    assert status.gpus[1].unprotected_memory_total == 0
    assert again.fault is VirtualFault.WRONG_NONCE
    again.inject_fault(None)
    assert VirtualGpuBackend.open().fault is None


def test_explicit_home_is_independent(tmp_path: Path) -> None:
    VirtualGpuBackend.create(home=tmp_path, gpus=3)
    assert VirtualGpuBackend.open(tmp_path).gpu_count == 3
    assert VirtualGpuBackend.open().gpu_count == 1  # $CCAI_HOME untouched until now: default


def test_set_cc_mode_resets_ready_and_reboots() -> None:
    backend = VirtualGpuBackend.create()
    backend.set_ready(True)
    chain_before = backend.certificate_chain(0)
    backend.set_cc_mode(CcMode.DEVTOOLS)
    reopened = VirtualGpuBackend.open()
    status = reopened.status()
    assert status.devtools is True
    assert status.cc_feature is True
    assert status.gpus_ready is False
    # A mode switch resets the GPU: a new boot has a new attestation key, the identity stays.
    chain_after = reopened.certificate_chain(0)
    assert chain_after != chain_before
    assert (
        chain_after.split(b"-----END CERTIFICATE-----")[1:]
        == chain_before.split(b"-----END CERTIFICATE-----")[1:]
    )


def test_cc_off() -> None:
    backend = VirtualGpuBackend.create(mode=CcMode.OFF)
    status = backend.status()
    assert status.cc_feature is False
    assert status.devtools is False
    assert status.key_rotation_threshold is None
    assert status.gpus[0].protected_memory_total == 0
    with pytest.raises(DeviceNotSupported):
        backend.attestation_report(0, bytes(32))
    with pytest.raises(DeviceNotSupported):
        backend.set_ready(True)
    backend.set_cc_mode(CcMode.ON)
    assert len(backend.attestation_report(0, bytes(32))) > 4000


@pytest.mark.parametrize(
    "call",
    [
        lambda b: b.set_key_rotation_threshold(49),
        lambda b: b.set_key_rotation_threshold(66),
        lambda b: b.set_unprotected_memory(0, 1000),  # not a multiple of 1 KiB
        lambda b: b.set_unprotected_memory(0, -1024),
        lambda b: b.set_unprotected_memory(0, 10**15),
        lambda b: b.set_unprotected_memory(1, 0),  # no GPU 1
        lambda b: b.attestation_report(0, bytes(31)),
        lambda b: b.attestation_report(1, bytes(32)),
        lambda b: b.certificate_chain(-1),
        lambda b: b.rim_ids(5),
    ],
)
def test_misuse_raises_usage_error(call: object) -> None:
    backend = VirtualGpuBackend.create()
    with pytest.raises(UsageError):
        call(backend)  # type: ignore[operator]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"gpus": 0},
        {"gpus": 9},
        {"driver_version": "latest"},
        {"vbios_version": "96.00.74"},
        {"architecture": Architecture.HOPPER, "chip": "GB100"},
        {"architecture": Architecture.OTHER},
        {"chip": "GA100", "architecture": Architecture.HOPPER},
        {"multi_gpu_mode": MultiGpuMode.NVLINK_ENCRYPTION},
        {"architecture": Architecture.BLACKWELL, "multi_gpu_mode": MultiGpuMode.PROTECTED_PCIE},
        {"seed": b""},
    ],
)
def test_bad_create_arguments(kwargs: dict[str, object]) -> None:
    with pytest.raises(UsageError):
        VirtualGpuBackend.create(**kwargs)  # type: ignore[arg-type]


def test_damaged_state_file_is_a_usage_error(ccai_home: Path) -> None:
    VirtualGpuBackend.create()
    path = ccai_home / "virtual-gpu.json"
    data = json.loads(path.read_text())
    data["gpus"] = 12
    path.write_text(json.dumps(data))
    with pytest.raises(UsageError, match="damaged"):
        VirtualGpuBackend.open()
    path.write_text("{not json")
    with pytest.raises(UsageError, match="damaged"):
        VirtualGpuBackend.open()
    # Regression: JSON that is not an object raised AttributeError (an internal error).
    path.write_text("[1, 2]")
    with pytest.raises(UsageError, match="not a JSON object"):
        VirtualGpuBackend.open()


def test_create_options_show_in_status() -> None:
    backend = VirtualGpuBackend.create(
        gpus=8,
        architecture=Architecture.BLACKWELL,
        chip="GB202",
        vbios_version="98.02.81.00.01",
        cpu_cc_capability=CpuCcCapability.SEV_SNP,
    )
    status = backend.status()
    assert status.cpu_cc_capability is CpuCcCapability.SEV_SNP
    assert {g.name for g in status.gpus} == {"NVIDIA RTX PRO 6000 Blackwell Server Edition"}
    assert len({g.uuid for g in status.gpus}) == 8
    assert all(g.vbios_version == "98.02.81.00.01" for g in status.gpus)
