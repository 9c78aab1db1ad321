"""NvmlBackend: no-driver behaviour, NVML error mapping, PEM chain layout, and the status/evidence logic.

This machine has no GPU, so the logic above the binding runs against ``StandInNvml``: a minimal
driver stand-in that returns pynvml's own ctypes structures and raises pynvml's own ``NVMLError``
subclasses, shaped like an H100 with CC off (the GPU machine) or on (with a real report and chain).
"""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Any

import pynvml
import pytest

from ccai.device import (
    Architecture,
    CcMode,
    CpuCcCapability,
    GpuBackend,
    MultiGpuMode,
    NvmlBackend,
)
from ccai.device._nvml import NO_DRIVER_MESSAGE, map_nvml_error, normalize_pem_chain
from ccai.errors import (
    DeviceError,
    DeviceNotSupported,
    DriverNotFound,
    MalformedEvidence,
    UsageError,
)

SAMPLES = "nvtrust/NVIDIA_nvtrust@0281730/guest_tools/gpu_verifiers/local_gpu_verifier/src/verifier/samples"


def _report(vectors: Path) -> bytes:
    return bytes.fromhex("".join((vectors / SAMPLES / "hopperAttestationReport.txt").read_text().split()))


def _chain(vectors: Path) -> bytes:
    return (vectors / SAMPLES / "hopperCertChain.txt").read_bytes()


class StandInNvml:
    """The subset of pynvml that NvmlBackend calls, for one or more H100s."""

    NVMLError = pynvml.NVMLError
    NVML_SUCCESS = pynvml.NVML_SUCCESS
    c_nvmlSystemConfComputeSettings_v1_t = pynvml.c_nvmlSystemConfComputeSettings_v1_t  # noqa: N815 (pynvml name)

    def __init__(
        self,
        *,
        cc_on: bool,
        report: bytes = b"",
        chain: bytes = b"",
        gpus: int = 1,
        settings_code: int = pynvml.NVML_SUCCESS,
    ) -> None:
        for name in dir(pynvml):
            if name.startswith("NVML_ERROR_"):
                setattr(self, name, getattr(pynvml, name))
        self.cc_on = cc_on
        self.report = report
        self.chain = chain
        self.gpus = gpus
        self.settings_code = settings_code
        self.ready = 0
        self.calls: list[tuple[str, Any]] = []
        self.initialised = 0

    def _cc_only(self) -> None:
        if not self.cc_on:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)

    def nvmlInit(self) -> None:
        self.initialised += 1

    def nvmlShutdown(self) -> None:
        self.initialised -= 1

    def nvmlSystemGetDriverVersion(self) -> str:
        return "570.124.06"

    def nvmlDeviceGetCount(self) -> int:
        return self.gpus

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return 100 + index

    def nvmlDeviceGetName(self, handle: int) -> str:
        return "NVIDIA H100 80GB HBM3"

    def nvmlDeviceGetUUID(self, handle: int) -> str:
        return f"GPU-00000000-0000-0000-0000-{handle:012d}"

    def nvmlDeviceGetArchitecture(self, handle: int) -> int:
        return pynvml.NVML_DEVICE_ARCH_HOPPER

    def nvmlDeviceGetVbiosVersion(self, handle: int) -> str:
        return "96.00.99.00.01"

    def nvmlDeviceGetBoardId(self, handle: int) -> int:
        return 0x4000 + handle

    def nvmlSystemGetConfComputeSettings(self, ref: Any) -> int:
        if self.settings_code != pynvml.NVML_SUCCESS:
            return self.settings_code
        settings = ref._obj
        assert settings.version == pynvml.nvmlSystemConfComputeSettings_v1
        settings.environment = pynvml.NVML_CC_SYSTEM_ENVIRONMENT_PROD if self.cc_on else 0
        settings.ccFeature = 1 if self.cc_on else 0
        settings.devToolsMode = 0
        settings.multiGpuMode = pynvml.NVML_CC_SYSTEM_MULTIGPU_PROTECTED_PCIE if self.cc_on else 0
        return pynvml.NVML_SUCCESS

    def nvmlSystemGetConfComputeState(self) -> Any:
        state = pynvml.c_nvmlConfComputeSystemState_t()
        state.environment, state.ccFeature, state.devToolsMode = (1, 1, 1) if self.cc_on else (0, 0, 0)
        return state

    def nvmlSystemGetConfComputeCapabilities(self) -> Any:
        caps = pynvml.c_nvmlConfComputeSystemCaps_t()
        caps.cpuCaps = pynvml.NVML_CC_SYSTEM_CPU_CAPS_INTEL_TDX if self.cc_on else 0
        caps.gpusCaps = 1
        return caps

    def nvmlSystemGetConfComputeGpusReadyState(self) -> int:
        self._cc_only()
        return self.ready

    def nvmlSystemSetConfComputeGpusReadyState(self, state: int) -> int:
        self._cc_only()
        self.calls.append(("ready", state))
        self.ready = state
        return pynvml.NVML_SUCCESS

    def nvmlSystemGetConfComputeKeyRotationThresholdInfo(self) -> Any:
        self._cc_only()
        info = pynvml.c_nvmlConfComputeGetKeyRotationThresholdInfo_t(0)
        info.attackerAdvantage = 60
        return info

    def nvmlSystemSetConfComputeKeyRotationThresholdInfo(self, value: int) -> int:
        self.calls.append(("threshold", value))
        return pynvml.NVML_SUCCESS

    def nvmlDeviceGetConfComputeMemSizeInfo(self, handle: int) -> Any:
        self._cc_only()
        info = pynvml.c_nvmlConfComputeMemSizeInfo_t()
        info.protectedMemSizeKib = 79 * 1024 * 1024
        info.unprotectedMemSizeKib = 1024 * 1024
        return info

    def nvmlDeviceGetConfComputeProtectedMemoryUsage(self, handle: int) -> Any:
        self._cc_only()
        mem = pynvml.c_nvmlMemory_t()
        mem.total, mem.used, mem.free = 79 << 30, 5 << 20, (79 << 30) - (5 << 20)
        return mem

    def nvmlDeviceSetConfComputeUnprotectedMemSize(self, handle: int, kib: ctypes.c_ulonglong) -> int:
        self.calls.append(("unprotected", (handle, kib.value)))
        return pynvml.NVML_SUCCESS

    def nvmlDeviceGetConfComputeGpuAttestationReport(self, handle: int, nonce: bytes) -> Any:
        # What NVML does on a GPU with CC off (seen as "Not Supported" or an invalid state).
        if not self.cc_on:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_STATE)
        result = pynvml.c_nvmlConfComputeGpuAttestationReport_t()
        result.attestationReportSize = len(self.report)
        ctypes.memmove(result.attestationReport, self.report, len(self.report))
        self.calls.append(("nonce", bytes(nonce)))
        return result

    def nvmlDeviceGetConfComputeGpuCertificate(self, handle: int) -> Any:
        self._cc_only()
        result = pynvml.c_nvmlConfComputeGpuCertificate_t()
        result.attestationCertChainSize = len(self.chain)
        ctypes.memmove(result.attestationCertChain, self.chain, len(self.chain))
        return result


# -- without a driver ----------------------------------------------------------------------------


def test_open_without_driver_raises_driver_not_found() -> None:
    with pytest.raises(DriverNotFound) as info:
        NvmlBackend.open()
    assert info.value.message == NO_DRIVER_MESSAGE
    assert "--simulate" in str(info.value)


# -- error mapping with pynvml's real error classes --------------------------------------------


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (pynvml.NVML_ERROR_LIBRARY_NOT_FOUND, DriverNotFound),
        (pynvml.NVML_ERROR_DRIVER_NOT_LOADED, DriverNotFound),
        (pynvml.NVML_ERROR_NOT_SUPPORTED, DeviceNotSupported),
        (pynvml.NVML_ERROR_FUNCTION_NOT_FOUND, DeviceNotSupported),
        (pynvml.NVML_ERROR_ARGUMENT_VERSION_MISMATCH, DeviceNotSupported),
        (pynvml.NVML_ERROR_INVALID_ARGUMENT, UsageError),
        (pynvml.NVML_ERROR_NO_PERMISSION, DeviceError),
        (pynvml.NVML_ERROR_INVALID_STATE, DeviceError),
        (pynvml.NVML_ERROR_GPU_IS_LOST, DeviceError),
        (pynvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH, DeviceError),
        (pynvml.NVML_ERROR_UNKNOWN, DeviceError),
    ],
)
def test_map_nvml_error(code: int, expected: type[Exception]) -> None:
    exc = pynvml.NVMLError(code)
    assert type(exc) is not pynvml.NVMLError  # pynvml hands out its per-code subclass
    mapped = map_nvml_error(exc, operation="read something", nvml=pynvml)
    assert type(mapped) is expected
    if code != pynvml.NVML_ERROR_LIBRARY_NOT_FOUND:  # that one is a single line on purpose
        assert str(code) in str(mapped.actual)


def test_map_no_permission_hints_at_root() -> None:
    mapped = map_nvml_error(pynvml.NVMLError_NoPermission(pynvml.NVML_ERROR_NO_PERMISSION), operation="x")
    assert mapped.hint is not None and "root" in mapped.hint
    assert "NVML_ERROR_NO_PERMISSION" in str(
        map_nvml_error(pynvml.NVMLError(pynvml.NVML_ERROR_NO_PERMISSION), operation="x", nvml=pynvml).actual
    )


def test_map_not_supported_names_operation() -> None:
    mapped = map_nvml_error(pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED), operation="read the report")
    assert mapped.message.startswith("cannot read the report")


# -- the attestation certificate chain buffer --------------------------------------------------


def test_normalize_chain_keeps_leaf_first(vectors: Path) -> None:
    raw = _chain(vectors)
    out = normalize_pem_chain(raw + b"\x00" * 64)
    assert out.count(b"-----BEGIN CERTIFICATE-----") == 5
    assert out.startswith(b"-----BEGIN CERTIFICATE-----")
    assert normalize_pem_chain(out) == out


def test_normalize_chain_reverses_root_first(vectors: Path) -> None:
    leaf_first = normalize_pem_chain(_chain(vectors))
    blocks = [b"-----BEGIN" + b for b in leaf_first.split(b"-----BEGIN")[1:]]
    root_first = b"".join(reversed(blocks)).replace(b"\n", b"\r\n")
    assert normalize_pem_chain(root_first) == leaf_first


def test_normalize_chain_rejects_garbage() -> None:
    with pytest.raises(MalformedEvidence):
        normalize_pem_chain(b"\x00" * 100)
    with pytest.raises(MalformedEvidence):
        normalize_pem_chain(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")


# -- status and evidence over the stand-in driver ------------------------------------------------


def test_backend_satisfies_protocol_and_inits_once() -> None:
    lib = StandInNvml(cc_on=False)
    with NvmlBackend.open(library=lib) as gpu:
        assert isinstance(gpu, GpuBackend)
        assert lib.initialised == 1
    assert lib.initialised == 0
    gpu.close()
    assert lib.initialised == 0
    with pytest.raises(UsageError):
        gpu.status()


def test_status_on_gpu_with_cc_off_degrades() -> None:
    with NvmlBackend.open(library=StandInNvml(cc_on=False)) as gpu:
        status = gpu.status()
    assert status.driver_version == "570.124.06"
    assert status.cc_feature is False and status.devtools is False
    assert status.gpus_ready is False
    assert status.key_rotation_threshold is None
    assert status.environment == "unknown"
    assert status.multi_gpu_mode is MultiGpuMode.NONE
    assert status.simulated is False
    (gpu0,) = status.gpus
    assert gpu0.architecture is Architecture.HOPPER
    assert gpu0.name == "NVIDIA H100 80GB HBM3"
    assert gpu0.board_id == 0x4000 + 100
    assert gpu0.protected_memory_total is None and gpu0.protected_memory_used is None


def test_status_on_gpu_with_cc_on() -> None:
    lib = StandInNvml(cc_on=True, gpus=2)
    lib.ready = 1
    with NvmlBackend.open(library=lib) as gpu:
        status = gpu.status()
    assert status.cc_feature is True
    assert status.environment == "production"
    assert status.multi_gpu_mode is MultiGpuMode.PROTECTED_PCIE
    assert status.cpu_cc_capability is CpuCcCapability.TDX
    assert status.gpu_cc_capable is True
    assert status.gpus_ready is True
    assert status.key_rotation_threshold == 60
    assert [g.index for g in status.gpus] == [0, 1]
    assert status.gpus[1].protected_memory_total == 79 << 30
    assert status.gpus[1].unprotected_memory_total == 1 << 30
    assert status.gpus[1].protected_memory_used == 5 << 20


def test_status_falls_back_to_state_without_settings_call() -> None:
    lib = StandInNvml(cc_on=True, settings_code=pynvml.NVML_ERROR_FUNCTION_NOT_FOUND)
    with NvmlBackend.open(library=lib) as gpu:
        status = gpu.status()
    assert status.cc_feature and status.devtools
    assert status.environment == "simulation"
    assert status.multi_gpu_mode is MultiGpuMode.NONE


def test_status_raises_on_real_failure() -> None:
    lib = StandInNvml(cc_on=True, settings_code=pynvml.NVML_ERROR_GPU_IS_LOST)
    with NvmlBackend.open(library=lib) as gpu, pytest.raises(DeviceError, match="needs a reset"):
        gpu.status()


def test_evidence_with_cc_on(vectors: Path) -> None:
    lib = StandInNvml(cc_on=True, report=_report(vectors), chain=_chain(vectors))
    nonce = bytes(range(32))
    with NvmlBackend.open(library=lib) as gpu:
        assert gpu.attestation_report(0, nonce) == _report(vectors)
        chain = gpu.certificate_chain(0)
    assert ("nonce", nonce) in lib.calls
    assert chain == normalize_pem_chain(_chain(vectors))


def test_evidence_with_cc_off_says_cc_is_off() -> None:
    with NvmlBackend.open(library=StandInNvml(cc_on=False)) as gpu:
        with pytest.raises(DeviceNotSupported, match="confidential computing is off") as info:
            gpu.attestation_report(0, bytes(32))
        assert info.value.hint is not None and "--set-cc-mode" in info.value.hint
        with pytest.raises(DeviceNotSupported, match="confidential computing is off"):
            gpu.certificate_chain(0)


@pytest.mark.parametrize("size", [0, 31, 33, 64])
def test_report_nonce_must_be_32_bytes(size: int) -> None:
    with (
        NvmlBackend.open(library=StandInNvml(cc_on=True)) as gpu,
        pytest.raises(UsageError, match="32 bytes"),
    ):
        gpu.attestation_report(0, bytes(size))


def test_unknown_gpu_index() -> None:
    with NvmlBackend.open(library=StandInNvml(cc_on=True, gpus=2)) as gpu:
        with pytest.raises(UsageError, match="no GPU with index 2"):
            gpu.certificate_chain(2)
        with pytest.raises(UsageError):
            gpu.attestation_report(-1, bytes(32))


def test_writes_reach_nvml() -> None:
    lib = StandInNvml(cc_on=True)
    with NvmlBackend.open(library=lib) as gpu:
        gpu.set_ready(True)
        gpu.set_unprotected_memory(0, 2 << 30)
        gpu.set_key_rotation_threshold(55)
    assert lib.calls == [("ready", 1), ("unprotected", (100, 2 << 20)), ("threshold", 55)]


def test_write_argument_checks() -> None:
    lib = StandInNvml(cc_on=True)
    with NvmlBackend.open(library=lib) as gpu:
        with pytest.raises(UsageError, match="multiple of 1024"):
            gpu.set_unprotected_memory(0, 1000)
        with pytest.raises(UsageError, match="between 50 and 65"):
            gpu.set_key_rotation_threshold(49)
        with pytest.raises(UsageError):
            gpu.set_key_rotation_threshold(66)
    assert lib.calls == []


def test_set_ready_on_gpu_with_cc_off_is_a_device_error() -> None:
    with NvmlBackend.open(library=StandInNvml(cc_on=False)) as gpu, pytest.raises(DeviceNotSupported):
        gpu.set_ready(True)


@pytest.mark.parametrize("mode", list(CcMode))
def test_set_cc_mode_explains_host_side(mode: CcMode) -> None:
    with NvmlBackend.open(library=StandInNvml(cc_on=True)) as gpu, pytest.raises(DeviceNotSupported) as info:
        gpu.set_cc_mode(mode)
    assert info.value.hint is not None
    assert "nvidia_gpu_tools.py" in info.value.hint and "--reset-after-cc-mode-switch" in info.value.hint
