"""tee stage of ccai: CPU TEE evidence collection (see docs/virtual-tee.md).

* :class:`ConfigfsTsm` — real TDX quotes / SEV-SNP reports through Linux configfs-tsm
  (``/sys/kernel/config/tsm/report``), with the generation check against racing writers;
* :class:`VirtualCpuTee` — the virtual CPU TEE (TDX and SEV-SNP flavours) whose evidence is in the
  exact vendor layouts, signed by a test PKI, with collateral that ccai's dev collateral server
  serves. Its anchors (:class:`VirtualTeeAnchors`) are trusted only with ``allow_simulated=True``.

:func:`open_cpu_tee` picks one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ccai.tee._configfs import (
    CONFIGFS_TSM_REPORT,
    ConfigfsTsm,
    CpuQuote,
    LinuxTsmFilesystem,
    TsmFilesystem,
    TsmReport,
    parse_snp_certificate_table,
)
from ccai.tee._virtual import DEFAULT_TEE_SEED, VirtualCpuTee, VirtualTeeAnchors
from ccai.tee._virtual_pki import TEST_ORG, VirtualTeePki

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "CONFIGFS_TSM_REPORT",
    "DEFAULT_TEE_SEED",
    "TEST_ORG",
    "ConfigfsTsm",
    "CpuQuote",
    "LinuxTsmFilesystem",
    "TsmFilesystem",
    "TsmReport",
    "VirtualCpuTee",
    "VirtualTeeAnchors",
    "VirtualTeePki",
    "open_cpu_tee",
    "parse_snp_certificate_table",
]


def open_cpu_tee(*, simulate: str | None, home: Path | None = None) -> ConfigfsTsm | VirtualCpuTee:
    """Open the CPU TEE a command asked for.

    Args:
        simulate: ``"tdx"`` or ``"snp"`` for the virtual TEE under ``home`` (created or switched to
            that flavour, keeping its seed); ``None`` for the real configfs-tsm interface.
        home: State directory of the virtual TEE (default ``$CCAI_HOME``).

    Raises:
        UsageError: an unknown flavour.

    Returns:
        Something with a ``quote(report_data) -> CpuQuote`` method.
    """
    if simulate is None:
        return ConfigfsTsm()
    tee = VirtualCpuTee.open(home)
    if tee.tee != simulate:
        tee = VirtualCpuTee.create(home=tee.home, tee=simulate, seed=tee.seed)
    return tee
