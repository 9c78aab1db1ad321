"""The virtual confidential VM: one virtual TDX/SNP guest and its virtual CC GPUs under one home."""

from __future__ import annotations

from pathlib import Path

from ccai._home import ccai_home
from ccai.errors import UsageError
from ccai.virtual._gpu import MAX_GPUS, STATE_FILE, VirtualGpuBackend
from ccai.virtual._tee import DEFAULT_TEE_SEED, TEE_STATE_FILE, VirtualCpuTee

__all__ = ["open_virtual_vm"]


def open_virtual_vm(
    *, tee: str, gpus: int | None = None, home: Path | None = None, seed: str | None = None
) -> tuple[VirtualCpuTee, VirtualGpuBackend]:
    """The virtual confidential VM under ``home``: the virtual TDX/SNP guest and its virtual GPUs.

    Existing virtual hardware is used as it is: recreating it would give it a new test PKI and
    silently stop every earlier evidence file from verifying. So a request it does not match is
    refused, naming the command that recreates it on purpose. What is missing is created (from
    ``seed``, else the public default seed). The guest's flavour (TDX or SNP) follows ``tee``: it
    keeps the guest's seed, so earlier evidence still verifies.

    Args:
        tee: ``"tdx"`` or ``"snp"``.
        gpus: Number of virtual GPUs to attest (0 for a CPU-only VM); ``None``: the existing
            virtual GPUs as they are (one when there are none yet).
        home: State directory (default ``$CCAI_HOME``).
        seed: Seed text for the test PKIs of what is created; existing hardware must have it.

    Raises:
        UsageError: bad flavour or GPU count, or existing virtual hardware that differs from the
            request (another GPU count or seed).
    """
    home = home if home is not None else ccai_home()
    if gpus is not None and not 0 <= gpus <= MAX_GPUS:
        raise UsageError(f"a virtual VM has 0–{MAX_GPUS} GPUs", expected=f"0..{MAX_GPUS}", actual=gpus)
    raw_seed = seed.encode() if seed is not None else None
    backend = VirtualGpuBackend.open(home) if (home / STATE_FILE).exists() else None
    if backend is not None:
        if gpus and backend.gpu_count != gpus:
            arch = backend.model.architecture.value
            raise UsageError(
                f"{home} already holds {backend.gpu_count} virtual {arch} GPU(s), "
                f"not {gpus}: leave out --gpus to use them, or recreate them with "
                f"`ccai gpu init --simulate --gpus {gpus}` (earlier evidence then stops verifying)"
            )
        if raw_seed is not None and backend.seed != raw_seed:
            raise UsageError(
                f"the virtual GPUs under {home} have another test-PKI seed than --seed: leave out --seed "
                f"to use them, recreate them with `ccai gpu init --simulate --seed …` (earlier evidence "
                f"then stops verifying), or use another CCAI_HOME"
            )
    if (home / TEE_STATE_FILE).exists():
        cpu = VirtualCpuTee.open(home)
        if raw_seed is not None and cpu.seed != raw_seed:
            raise UsageError(
                f"the virtual {cpu.tee.upper()} guest under {home} has another test-PKI seed than --seed: "
                "leave out --seed to use it, or use another CCAI_HOME"
            )
        if cpu.tee != tee:
            # Same seed, same test PKI: evidence of the other flavour keeps verifying.
            cpu = VirtualCpuTee.create(home=home, tee=tee, seed=cpu.seed)
    else:
        cpu = VirtualCpuTee.create(
            home=home, tee=tee, seed=raw_seed if raw_seed is not None else DEFAULT_TEE_SEED
        )
    if backend is None:
        # A CPU-only VM still gets one virtual GPU: the dev collateral server serves the VM's PKIs.
        backend = VirtualGpuBackend.create(home=home, gpus=max(gpus or 1, 1), seed=cpu.seed)
    return cpu, backend
