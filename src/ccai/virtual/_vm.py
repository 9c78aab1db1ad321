"""The virtual confidential VM: one virtual TDX/SNP guest and its virtual CC GPUs under one home."""

from __future__ import annotations

from pathlib import Path

from ccai._home import ccai_home
from ccai.device import CcMode
from ccai.errors import UsageError
from ccai.virtual._gpu import STATE_FILE, VirtualGpuBackend
from ccai.virtual._tee import DEFAULT_TEE_SEED, TEE_STATE_FILE, VirtualCpuTee

__all__ = ["open_virtual_vm"]


def open_virtual_vm(
    *, tee: str, gpus: int, home: Path | None = None, seed: str | None = None
) -> tuple[VirtualCpuTee, VirtualGpuBackend]:
    """The virtual confidential VM under ``home``: the virtual TDX/SNP guest and its virtual GPUs.

    Existing state is reused when it matches (flavour, GPU count, seed); otherwise both halves are
    (re)created from one seed — the given one, or the existing TEE's, or the public default.

    Args:
        tee: ``"tdx"`` or ``"snp"``.
        gpus: Number of virtual GPUs (0 for a CPU-only VM).
        home: State directory (default ``$CCAI_HOME``).
        seed: Seed text for both test PKIs.

    Raises:
        UsageError: bad flavour or GPU count.
    """
    home = home if home is not None else ccai_home()
    if not 0 <= gpus <= 8:
        raise UsageError("a virtual VM has 0–8 GPUs", expected="0..8", actual=gpus)
    if (home / TEE_STATE_FILE).exists() and seed is None:
        cpu = VirtualCpuTee.open(home)
    else:
        cpu = VirtualCpuTee.create(home=home, tee=tee, seed=seed if seed is not None else DEFAULT_TEE_SEED)
    if cpu.tee != tee:
        cpu = VirtualCpuTee.create(home=home, tee=tee, seed=cpu.seed)
    count = max(gpus, 1)
    backend = VirtualGpuBackend.open(home) if (home / STATE_FILE).exists() else None
    if (
        backend is None
        or backend.gpu_count != count
        or backend.seed != cpu.seed
        or backend.mode is not CcMode.ON
    ):
        backend = VirtualGpuBackend.create(home=home, gpus=count, seed=cpu.seed)
    return cpu, backend
