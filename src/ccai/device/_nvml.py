"""The real GPU backend: the NVIDIA driver's CC control plane through NVML (nvidia-ml-py).

The calls and structures are those of ``nvml.h`` as wrapped by ``pynvml`` (gpu-evidence.md §3.1):

* system: ``nvmlSystemGetDriverVersion``, ``nvmlSystemGetConfComputeSettings`` (falling back to
  ``nvmlSystemGetConfComputeState`` on drivers without multi-GPU mode),
  ``nvmlSystemGetConfComputeCapabilities``,
  ``nvmlSystemGet/SetConfComputeGpusReadyState``, ``nvmlSystemGet/SetConfComputeKeyRotationThresholdInfo``;
* per GPU: name, UUID, architecture, VBIOS version, board id, ``nvmlDeviceGetConfComputeMemSizeInfo``,
  ``nvmlDeviceGetConfComputeProtectedMemoryUsage``, ``nvmlDeviceSetConfComputeUnprotectedMemSize``,
  ``nvmlDeviceGetConfComputeGpuAttestationReport`` and ``nvmlDeviceGetConfComputeGpuCertificate``.

Every NVML failure becomes a ccai error (:func:`map_nvml_error`). Status facts that a GPU or driver
does not support (a GPU without CC, CC switched off, an older driver) degrade to ``None``/``False``
instead of failing, so ``ccai gpu status`` works on every NVIDIA GPU. The CC mode itself cannot be
set through NVML: it is a host-side operation (gpu-evidence.md §3.2), and :meth:`NvmlBackend.set_cc_mode`
says how it is done.
"""

from __future__ import annotations

import ctypes
import re
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

from cryptography import x509

from ccai.device._backend import (
    Architecture,
    CcMode,
    CcStatus,
    CpuCcCapability,
    GpuInfo,
    MultiGpuMode,
)
from ccai.errors import (
    DeviceError,
    DeviceNotSupported,
    DriverNotFound,
    Error,
    MalformedEvidence,
    UsageError,
)

__all__ = [
    "HOST_CC_MODE_HINT",
    "KEY_ROTATION_THRESHOLD_MAX",
    "KEY_ROTATION_THRESHOLD_MIN",
    "NO_DRIVER_MESSAGE",
    "NvmlBackend",
    "map_nvml_error",
    "normalize_pem_chain",
]

_T = TypeVar("_T")

NO_DRIVER_MESSAGE = "no NVIDIA driver found (NVML library missing); use --simulate for the virtual CC GPU"

#: How the CC mode is changed on real hardware (gpu-evidence.md §3.2). NVML has no call for it.
HOST_CC_MODE_HINT = (
    "on the host, as root, with the GPU not bound to a VM (NVIDIA gpu-admin-tools): "
    "`python3 nvidia_gpu_tools.py --devices gpus --set-cc-mode on|off|devtools "
    "--reset-after-cc-mode-switch`; "
    "check with `--query-cc-mode`, then (re)start the confidential VM"
)

# nvml.h: NVML_CC_KEY_ROTATION_THRESH_ATTACKER_ADVANTAGE_MIN / _MAX.
KEY_ROTATION_THRESHOLD_MIN = 50
KEY_ROTATION_THRESHOLD_MAX = 65

# nvml.h return codes (stable ABI values; pynvml exposes the same numbers as NVML_ERROR_*).
_ERR_UNINITIALIZED = 1
_ERR_INVALID_ARGUMENT = 2
_ERR_NOT_SUPPORTED = 3
_ERR_NO_PERMISSION = 4
_ERR_DRIVER_NOT_LOADED = 9
_ERR_LIBRARY_NOT_FOUND = 12
_ERR_FUNCTION_NOT_FOUND = 13
_ERR_GPU_IS_LOST = 15
_ERR_RESET_REQUIRED = 16
_ERR_LIB_RM_VERSION_MISMATCH = 18
_ERR_ARGUMENT_VERSION_MISMATCH = 25
_ERR_NOT_READY = 27
_ERR_INVALID_STATE = 29

# Codes meaning "this GPU/driver does not offer that fact": a status read degrades instead of failing.
_UNSUPPORTED = frozenset(
    {_ERR_NOT_SUPPORTED, _ERR_FUNCTION_NOT_FOUND, _ERR_ARGUMENT_VERSION_MISMATCH, _ERR_INVALID_STATE}
)

# nvml.h nvmlDeviceArchitecture_t: NVML_DEVICE_ARCH_HOPPER = 9, NVML_DEVICE_ARCH_BLACKWELL = 10.
_ARCHITECTURES = {9: Architecture.HOPPER, 10: Architecture.BLACKWELL}

# nvml.h NVML_CC_SYSTEM_CPU_CAPS_*: 0 none, 1 AMD SEV, 2 Intel TDX, 3 AMD SEV-SNP, 4 AMD SNP with vTOM.
_CPU_CAPS = {
    0: CpuCcCapability.NONE,
    1: CpuCcCapability.SEV,
    2: CpuCcCapability.TDX,
    3: CpuCcCapability.SEV_SNP,
    4: CpuCcCapability.SEV_SNP,
}

# nvml.h NVML_CC_SYSTEM_MULTIGPU_*: 0 none, 1 protected PCIe, 2 NVLink encryption (NVLE).
_MULTI_GPU = {
    0: MultiGpuMode.NONE,
    1: MultiGpuMode.PROTECTED_PCIE,
    2: MultiGpuMode.NVLINK_ENCRYPTION,
}

# nvml.h NVML_CC_SYSTEM_ENVIRONMENT_*: 0 unavailable, 1 simulation, 2 production.
_ENVIRONMENTS = {1: "simulation", 2: "production"}

_NONCE_SIZE = 32  # NVML_CC_GPU_CEC_NONCE_SIZE: SPDM GET_MEASUREMENTS carries exactly 32 bytes

_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----[A-Za-z0-9+/=\s]+?-----END CERTIFICATE-----")


def _error_name(nvml: Any, value: int) -> str:
    """``NVML_ERROR_NOT_SUPPORTED`` for 3, from the binding's own constants."""
    for name in dir(nvml):
        if name.startswith("NVML_ERROR_") and getattr(nvml, name) == value:
            return str(name)
    return f"NVML error {value}"


def map_nvml_error(exc: BaseException, *, operation: str, nvml: Any = None) -> Error:
    """Translate a ``pynvml.NVMLError`` into the ccai error a caller can act on.

    Args:
        exc: The exception raised by pynvml (its ``value`` is the ``nvmlReturn_t`` code).
        operation: What was attempted, in words ("read the attestation report of GPU 0").
        nvml: The pynvml module, used only to name the code in diagnostics.

    Returns:
        ``DriverNotFound`` (library missing, driver not loaded), ``DeviceNotSupported`` (not supported by
        this GPU or driver), ``UsageError`` (invalid argument), or ``DeviceError`` with a hint
        (no permission, invalid state, GPU lost, anything else).
    """
    value = int(getattr(exc, "value", -1))
    code = _error_name(nvml, value) if nvml is not None else f"NVML error {value}"
    detail = f"{code} ({value}): {exc}"
    if value == _ERR_LIBRARY_NOT_FOUND:
        # The common case on machines without a GPU: one line, no NVML detail (it adds nothing).
        return DriverNotFound(NO_DRIVER_MESSAGE)
    if value == _ERR_DRIVER_NOT_LOADED:
        return DriverNotFound(
            "the NVIDIA kernel driver is not loaded; use --simulate for the virtual CC GPU",
            actual=detail,
            hint="load it with `modprobe nvidia` or check `nvidia-smi`",
        )
    if value == _ERR_NOT_SUPPORTED:
        return DeviceNotSupported(f"cannot {operation}: not supported by this GPU or driver", actual=detail)
    if value in (_ERR_FUNCTION_NOT_FOUND, _ERR_ARGUMENT_VERSION_MISMATCH):
        return DeviceNotSupported(
            f"cannot {operation}: the installed NVIDIA driver does not offer this NVML call",
            actual=detail,
            hint="CC calls need a CC-capable driver (R535 or newer; multi-GPU mode and key rotation R550+)",
        )
    if value == _ERR_NO_PERMISSION:
        return DeviceError(
            f"cannot {operation}: permission denied by the NVIDIA driver",
            actual=detail,
            hint="CC control-plane writes need root (run with sudo inside the confidential VM)",
        )
    if value == _ERR_INVALID_ARGUMENT:
        return UsageError(f"cannot {operation}: the driver rejected the argument", actual=detail)
    if value in (_ERR_INVALID_STATE, _ERR_NOT_READY):
        return DeviceError(
            f"cannot {operation} in the GPU's current CC state",
            actual=detail,
            hint="check `ccai gpu status`: the GPUs-ready state is one-way and some settings need CC on",
        )
    if value in (_ERR_GPU_IS_LOST, _ERR_RESET_REQUIRED):
        return DeviceError(f"cannot {operation}: the GPU needs a reset", actual=detail, hint="reset the GPU")
    if value == _ERR_LIB_RM_VERSION_MISMATCH:
        return DeviceError(
            f"cannot {operation}: NVML and the kernel driver have different versions",
            actual=detail,
            hint="reload the nvidia kernel module or reboot after a driver update",
        )
    if value == _ERR_UNINITIALIZED:
        return DeviceError(f"cannot {operation}: NVML is not initialised", actual=detail)
    return DeviceError(f"cannot {operation}: NVML call failed", actual=detail)


def normalize_pem_chain(raw: bytes) -> bytes:
    """Turn NVML's ``attestationCertChain`` buffer into concatenated PEM, leaf first.

    NVML returns the chain as PEM text, leaf first and root last (gpu-evidence.md §3.1), possibly with
    NUL padding or CRLF line ends. The certificates are re-emitted with ``\\n`` line ends; a chain that
    arrives root first (self-signed first, not last) is reversed so the leaf always leads.

    Args:
        raw: The first ``attestationCertChainSize`` bytes of the buffer.

    Raises:
        MalformedEvidence: the buffer holds no PEM certificate, or a block does not decode.

    Returns:
        PEM bytes, one certificate after the other, each ending in a newline.
    """
    blocks = [m.group(0).replace(b"\r\n", b"\n") for m in _PEM_CERT.finditer(raw.rstrip(b"\x00"))]
    if not blocks:
        raise MalformedEvidence("the GPU's attestation certificate chain holds no PEM certificate")
    try:
        certs = [x509.load_pem_x509_certificate(block) for block in blocks]
    except ValueError as exc:
        raise MalformedEvidence(f"the GPU's attestation certificate chain does not decode: {exc}") from None

    def self_signed(cert: x509.Certificate) -> bool:
        return cert.subject == cert.issuer

    if len(certs) > 1 and self_signed(certs[0]) and not self_signed(certs[-1]):
        blocks.reverse()
    return b"".join(block + b"\n" for block in blocks)


class NvmlBackend:
    """:class:`~ccai.device.GpuBackend` over a real NVIDIA driver.

    NVML is initialised once when the backend is opened and shut down once when it is closed; use it
    as a context manager::

        with NvmlBackend.open() as gpu:
            print(gpu.status().cc_feature)
    """

    __slots__ = ("_closed", "_nvml")

    def __init__(self, nvml: Any) -> None:
        """Wrap an initialised NVML binding. Use :meth:`open` instead."""
        self._nvml = nvml
        self._closed = False

    @classmethod
    def open(cls, *, library: Any = None) -> NvmlBackend:
        """Load NVML and initialise it.

        Args:
            library: The binding module; default ``pynvml`` (nvidia-ml-py), imported here so that
                nothing NVIDIA-specific loads before it is needed.

        Raises:
            DriverNotFound: nvidia-ml-py is not installed, the NVML library is missing, or the driver is
                not loaded.
            DeviceError: NVML failed to initialise for another reason.

        Returns:
            An open backend; close it (or use ``with``) to shut NVML down.
        """
        if library is None:
            try:
                import pynvml
            except ImportError:
                raise DriverNotFound(
                    "nvidia-ml-py (pynvml) is not installed; use --simulate for the virtual CC GPU",
                    hint="pip install nvidia-ml-py",
                ) from None
            library = pynvml
        try:
            library.nvmlInit()
        except library.NVMLError as exc:
            raise map_nvml_error(exc, operation="initialise NVML", nvml=library) from None
        return cls(library)

    def close(self) -> None:
        """Shut NVML down (once; later calls do nothing)."""
        if self._closed:
            return
        self._closed = True
        try:
            self._nvml.nvmlShutdown()
        except self._nvml.NVMLError as exc:
            raise map_nvml_error(exc, operation="shut NVML down", nvml=self._nvml) from None

    def __enter__(self) -> NvmlBackend:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- plumbing --------------------------------------------------------------------------------

    def _call(self, operation: str, fn: Callable[..., _T], *args: Any) -> _T:
        if self._closed:
            raise UsageError("the NVML backend is closed")
        try:
            return fn(*args)
        except self._nvml.NVMLError as exc:
            raise map_nvml_error(exc, operation=operation, nvml=self._nvml) from None

    def _optional(self, operation: str, fn: Callable[..., _T], *args: Any) -> _T | None:
        """Like :meth:`_call`, but a fact this GPU or driver does not offer reads as ``None``."""
        if self._closed:
            raise UsageError("the NVML backend is closed")
        try:
            return fn(*args)
        except self._nvml.NVMLError as exc:
            if int(getattr(exc, "value", -1)) in _UNSUPPORTED:
                return None
            raise map_nvml_error(exc, operation=operation, nvml=self._nvml) from None

    def _count(self) -> int:
        return int(self._call("count the GPUs", self._nvml.nvmlDeviceGetCount))

    def _handle(self, index: int) -> Any:
        count = self._count()
        if not 0 <= index < count:
            raise UsageError(
                f"no GPU with index {index}", hint=f"this system has {count} GPU(s): 0..{count - 1}"
            )
        return self._call(f"open GPU {index}", self._nvml.nvmlDeviceGetHandleByIndex, index)

    def _settings_raw(self) -> Any:
        """``nvmlSystemGetConfComputeSettings`` (v1 struct); pynvml leaves the return code to us."""
        nvml = self._nvml
        settings = nvml.c_nvmlSystemConfComputeSettings_v1_t()
        ret = nvml.nvmlSystemGetConfComputeSettings(ctypes.byref(settings))
        if ret != nvml.NVML_SUCCESS:
            raise nvml.NVMLError(ret)
        return settings

    def _cc_state(self) -> tuple[int, int, int, int]:
        """``(environment, ccFeature, devToolsMode, multiGpuMode)``; zeros where unsupported."""
        settings = self._optional("read the CC settings", self._settings_raw)
        if settings is not None:
            return (
                int(settings.environment),
                int(settings.ccFeature),
                int(settings.devToolsMode),
                int(settings.multiGpuMode),
            )
        # Drivers before multi-GPU mode only have the 3-field state.
        state = self._optional("read the CC state", self._nvml.nvmlSystemGetConfComputeState)
        if state is not None:
            return int(state.environment), int(state.ccFeature), int(state.devToolsMode), 0
        return 0, 0, 0, 0

    def _cc_off_error(self, what: str, index: int, error: Error) -> Error:
        """Explain a failed evidence call on a GPU whose CC mode is off (the usual cause)."""
        try:
            _, cc_feature, _, _ = self._cc_state()
        except Error:
            return error
        if cc_feature == 1:
            return error
        return DeviceNotSupported(
            f"GPU {index} cannot produce {what}: confidential computing is off",
            index=index,
            actual=error.actual,
            hint=f"turn CC mode on {HOST_CC_MODE_HINT}",
        )

    def _gpu_info(self, index: int) -> GpuInfo:
        nvml = self._nvml
        handle = self._call(f"open GPU {index}", nvml.nvmlDeviceGetHandleByIndex, index)
        arch_id = self._optional(f"read GPU {index}'s architecture", nvml.nvmlDeviceGetArchitecture, handle)
        vbios = self._optional(f"read GPU {index}'s VBIOS version", nvml.nvmlDeviceGetVbiosVersion, handle)
        board = self._optional(f"read GPU {index}'s board id", nvml.nvmlDeviceGetBoardId, handle)
        mem = self._optional(
            f"read GPU {index}'s CC memory sizes", nvml.nvmlDeviceGetConfComputeMemSizeInfo, handle
        )
        usage = self._optional(
            f"read GPU {index}'s protected memory usage",
            nvml.nvmlDeviceGetConfComputeProtectedMemoryUsage,
            handle,
        )
        return GpuInfo(
            index=index,
            name=str(self._call(f"read GPU {index}'s name", nvml.nvmlDeviceGetName, handle)),
            uuid=str(self._call(f"read GPU {index}'s UUID", nvml.nvmlDeviceGetUUID, handle)),
            architecture=_ARCHITECTURES.get(int(arch_id), Architecture.OTHER)
            if arch_id is not None
            else Architecture.OTHER,
            vbios_version=str(vbios) if vbios is not None else "",
            board_id=int(board) if board is not None else 0,
            # NVML reports the CC partition in KiB and the usage in bytes.
            protected_memory_total=int(mem.protectedMemSizeKib) * 1024 if mem is not None else None,
            unprotected_memory_total=int(mem.unprotectedMemSizeKib) * 1024 if mem is not None else None,
            protected_memory_used=int(usage.used) if usage is not None else None,
            unprotected_memory_used=None,  # NVML has no call for it
        )

    # -- GpuBackend ------------------------------------------------------------------------------

    def status(self) -> CcStatus:
        """Read the system and per-GPU CC state, as ``nvidia-smi conf-compute -q`` does.

        Facts the GPU or driver does not support read as off/``False``/``None``: a GPU without CC, or
        with CC off, still gets a complete status.

        Raises:
            DeviceError: NVML failed in a way other than "not supported".

        Returns:
            The status; ``simulated`` is always False.
        """
        nvml = self._nvml
        driver = str(self._call("read the driver version", nvml.nvmlSystemGetDriverVersion))
        environment, cc_feature, devtools, multi_gpu = self._cc_state()
        caps = self._optional("read the CC capabilities", nvml.nvmlSystemGetConfComputeCapabilities)
        ready = self._optional("read the GPUs-ready state", nvml.nvmlSystemGetConfComputeGpusReadyState)
        threshold = self._optional(
            "read the key-rotation threshold", nvml.nvmlSystemGetConfComputeKeyRotationThresholdInfo
        )
        return CcStatus(
            driver_version=driver,
            cc_feature=cc_feature == 1,
            devtools=devtools != 0,
            environment=_ENVIRONMENTS.get(environment, "unknown"),
            multi_gpu_mode=_MULTI_GPU.get(multi_gpu, MultiGpuMode.NONE),
            cpu_cc_capability=_CPU_CAPS.get(int(caps.cpuCaps), CpuCcCapability.NONE)
            if caps is not None
            else CpuCcCapability.NONE,
            gpu_cc_capable=caps is not None and int(caps.gpusCaps) == 1,
            gpus_ready=ready is not None and int(ready) == 1,
            key_rotation_threshold=int(threshold.attackerAdvantage) if threshold is not None else None,
            gpus=tuple(self._gpu_info(i) for i in range(self._count())),
            simulated=False,
        )

    def attestation_report(self, index: int, nonce: bytes) -> bytes:
        """The SPDM attestation report (GET_MEASUREMENTS request ‖ response) of GPU ``index``.

        Args:
            index: GPU index as NVML numbers them.
            nonce: Exactly 32 bytes, placed in the SPDM request.

        Raises:
            UsageError: the nonce is not 32 bytes, or there is no such GPU.
            DeviceNotSupported: CC is off or the GPU cannot attest.
            DeviceError: any other NVML failure, or an impossible report size.

        Returns:
            The raw report bytes (``attestationReport[:attestationReportSize]``).
        """
        if len(nonce) != _NONCE_SIZE:
            raise UsageError(f"the nonce must be exactly {_NONCE_SIZE} bytes, got {len(nonce)}")
        handle = self._handle(index)
        try:
            result = self._call(
                f"read the attestation report of GPU {index}",
                self._nvml.nvmlDeviceGetConfComputeGpuAttestationReport,
                handle,
                nonce,
            )
        except DeviceError as exc:
            raise self._cc_off_error("an attestation report", index, exc) from None
        size = int(result.attestationReportSize)
        if not 0 < size <= len(result.attestationReport):
            raise DeviceError(f"NVML returned an attestation report of impossible size {size}", index=index)
        return bytes(result.attestationReport[:size])

    def certificate_chain(self, index: int) -> bytes:
        """The attestation certificate chain of GPU ``index`` as concatenated PEM, leaf first.

        Raises:
            UsageError: there is no such GPU.
            DeviceNotSupported: CC is off or the GPU has no attestation chain.
            MalformedEvidence: the driver's buffer holds no decodable PEM certificate.
            DeviceError: any other NVML failure.

        Returns:
            The ``attestationCertChain`` (not the device-identity ``certChain``), normalised by
            :func:`normalize_pem_chain`.
        """
        handle = self._handle(index)
        try:
            result = self._call(
                f"read the certificate chain of GPU {index}",
                self._nvml.nvmlDeviceGetConfComputeGpuCertificate,
                handle,
            )
        except DeviceError as exc:
            raise self._cc_off_error("an attestation certificate chain", index, exc) from None
        size = int(result.attestationCertChainSize)
        if not 0 < size <= len(result.attestationCertChain):
            raise DeviceError(f"NVML returned a certificate chain of impossible size {size}", index=index)
        return normalize_pem_chain(bytes(result.attestationCertChain[:size]))

    def set_ready(self, ready: bool) -> None:
        """Set the system-wide GPUs-ready state (``nvmlSystemSetConfComputeGpusReadyState``; needs root).

        Raises:
            DeviceError: permission denied, CC off, or the state cannot change any more.
        """
        self._call(
            f"set the GPUs-ready state to {'ready' if ready else 'not ready'}",
            self._nvml.nvmlSystemSetConfComputeGpusReadyState,
            1 if ready else 0,
        )

    def set_unprotected_memory(self, index: int, size: int) -> None:
        """Set GPU ``index``'s unprotected memory size (``nvmlDeviceSetConfComputeUnprotectedMemSize``).

        Args:
            index: GPU index.
            size: Bytes, a whole number of KiB (NVML takes KiB).

        Raises:
            UsageError: negative size, not a multiple of 1024, or no such GPU.
            DeviceError: NVML refused.
        """
        if size < 0 or size % 1024:
            raise UsageError(
                f"unprotected memory size must be a non-negative multiple of 1024 bytes, got {size}"
            )
        handle = self._handle(index)
        self._call(
            f"set GPU {index}'s unprotected memory size",
            self._nvml.nvmlDeviceSetConfComputeUnprotectedMemSize,
            handle,
            ctypes.c_ulonglong(size // 1024),
        )

    def set_key_rotation_threshold(self, max_attacker_advantage: int) -> None:
        """Set the key-rotation threshold (``nvmlSystemSetConfComputeKeyRotationThresholdInfo``).

        Args:
            max_attacker_advantage: 50..65, as ``nvml.h`` allows.

        Raises:
            UsageError: outside 50..65.
            DeviceError: NVML refused.
        """
        if not KEY_ROTATION_THRESHOLD_MIN <= max_attacker_advantage <= KEY_ROTATION_THRESHOLD_MAX:
            raise UsageError(
                "the key-rotation threshold (max attacker advantage) must be between "
                f"{KEY_ROTATION_THRESHOLD_MIN} and {KEY_ROTATION_THRESHOLD_MAX}, got {max_attacker_advantage}"
            )
        self._call(
            "set the key-rotation threshold",
            self._nvml.nvmlSystemSetConfComputeKeyRotationThresholdInfo,
            max_attacker_advantage,
        )

    def set_cc_mode(self, mode: CcMode) -> None:
        """Always refuses: NVML cannot change the CC mode.

        Raises:
            DeviceNotSupported: always, saying how the mode is set on the host.
        """
        raise DeviceNotSupported(
            f"cannot set CC mode {mode.value!r} through NVML: CC mode is set on the host, not by the driver",
            hint=HOST_CC_MODE_HINT,
        )
