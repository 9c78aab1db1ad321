"""tee stage of ccai: CPU TEE evidence collection inside a confidential VM (see docs/cpu-evidence.md).

One interface, :class:`CpuTee` (``quote(report_data) -> CpuQuote``), and the real implementation
:class:`ConfigfsTsm`: TDX quotes / SEV-SNP reports through Linux configfs-tsm
(``/sys/kernel/config/tsm/report``), with the generation check against racing writers. The
virtual TDX/SNP guest that satisfies the same interface lives in :mod:`ccai.virtual`.
"""

from __future__ import annotations

from ccai.tee._backend import CpuQuote, CpuTee
from ccai.tee._configfs import (
    CONFIGFS_TSM_REPORT,
    ConfigfsTsm,
    LinuxTsmFilesystem,
    TsmFilesystem,
    TsmReport,
    parse_snp_certificate_table,
)

__all__ = [
    "CONFIGFS_TSM_REPORT",
    "ConfigfsTsm",
    "CpuQuote",
    "CpuTee",
    "LinuxTsmFilesystem",
    "TsmFilesystem",
    "TsmReport",
    "parse_snp_certificate_table",
]
