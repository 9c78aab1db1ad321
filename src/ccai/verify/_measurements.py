"""Golden-vs-runtime measurement comparison for one GPU (gpu-evidence.md §8).

Rules, in NVIDIA's order:

1. The golden set is the union of the **active** entries (``active="True"``) of the driver RIM
   and the VBIOS RIM.
2. An index active in both RIMs is a conflict (claim ``x-nvidia-gpu-vbios-index-no-conflict``):
   the verifier could not say which manifest is authoritative, so it is refused outright.
3. RIM index *i* is compared with SPDM measurement block *i* + 1.
4. An index matches when the runtime value has the declared ``size`` **and** equals one of the
   alternatives ``Hash0 … Hash{N-1}``.
5. Index 35 (NVDEC0) is skipped when the signed opaque ``NVDEC0_STATUS`` is ``0x55`` (disabled);
   ``0xAA`` (enabled) or an absent field compares it normally; any other value is malformed.
6. Every mismatch becomes a claims-3.0 record ``{index, goldenSize, goldenValue, runtimeSize,
   runtimeValue, measurementSource}``; whether mismatches are acceptable is the policy's call.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ccai.errors import MalformedEvidence, RimMismatch
from ccai.evidence import AttestationReport, Rim, RimMeasurement

__all__ = [
    "NVDEC0_DISABLED",
    "NVDEC0_ENABLED",
    "NVDEC0_INDEX",
    "MeasurementComparison",
    "MismatchRecord",
    "compare_measurements",
]

#: RIM index of the NVDEC0 engine measurement, skipped when NVDEC0 is disabled.
NVDEC0_INDEX = 35
NVDEC0_ENABLED = 0xAA
NVDEC0_DISABLED = 0x55
_STEP = "(9) measurements"


@dataclass(frozen=True, slots=True, kw_only=True)
class MismatchRecord:
    """One golden measurement the runtime value does not match.

    Attributes:
        index: RIM index (SPDM block ``index + 1``).
        golden_size: The RIM's declared size.
        golden_values: Every acceptable value from the RIM.
        runtime_size: Size of the reported value (0 when the report has no such block).
        runtime_value: The reported value (empty when absent).
        source: ``"Driver"`` or ``"Firmware"`` (the VBIOS RIM), as NVIDIA labels them.
    """

    index: int
    golden_size: int
    golden_values: tuple[bytes, ...]
    runtime_size: int
    runtime_value: bytes
    source: str

    def as_claim(self) -> dict[str, Any]:
        """The record in NVIDIA's ``x-nvidia-mismatch-measurement-records`` shape."""
        return {
            "index": self.index,
            "goldenSize": self.golden_size,
            "goldenValue": self.golden_values[0].hex() if self.golden_values else "",
            "runtimeSize": self.runtime_size,
            "runtimeValue": self.runtime_value.hex(),
            "measurementSource": self.source,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class MeasurementComparison:
    """The outcome of comparing one report with its two RIMs.

    Attributes:
        compared: RIM indices compared (active, not skipped), ascending.
        skipped: RIM indices skipped by rule (NVDEC0 disabled).
        mismatches: The mismatching indices, ascending.
    """

    compared: tuple[int, ...]
    skipped: tuple[int, ...]
    mismatches: tuple[MismatchRecord, ...]

    @property
    def success(self) -> bool:
        """True when every compared index matched."""
        return not self.mismatches


def _active(rim: Rim) -> dict[int, RimMeasurement]:
    return {m.index: m for m in rim.measurements if m.active}


def compare_measurements(
    report: AttestationReport, *, driver_rim: Rim | None, vbios_rim: Rim
) -> MeasurementComparison:
    """Compare a report's measurement blocks with the golden values of its driver and VBIOS RIMs.

    Args:
        report: The parsed (and already authenticated) report.
        driver_rim: The authenticated driver RIM (None for an NVSwitch, which has only firmware).
        vbios_rim: The authenticated VBIOS RIM (or an NVSwitch's BIOS RIM).

    Returns:
        Which indices were compared, skipped and mismatched.

    Raises:
        RimMismatch: an index is active in both RIMs (index conflict).
        MalformedEvidence: the report's NVDEC0_STATUS is neither 0xAA nor 0x55.
    """
    driver = {} if driver_rim is None else _active(driver_rim)
    vbios = _active(vbios_rim)
    conflicts = sorted(driver.keys() & vbios.keys())
    if conflicts:
        raise RimMismatch(
            f"measurement index {conflicts[0]} is active in both the driver and the VBIOS RIM",
            step=_STEP,
            index=conflicts[0],
            expected="each index active in at most one RIM",
            actual=f"conflicting indices {conflicts}",
        )
    nvdec0 = report.opaque_data.nvdec0_status
    if nvdec0 not in (None, NVDEC0_ENABLED, NVDEC0_DISABLED):
        raise MalformedEvidence(
            f"NVDEC0_STATUS is 0x{nvdec0:02x}, neither 0xAA (enabled) nor 0x55 (disabled)",
            step=_STEP,
            index=NVDEC0_INDEX,
        )
    runtime: Mapping[int, bytes] = {block.index: block.value for block in report.measurements}
    golden: list[tuple[RimMeasurement, str]] = [(m, "Driver") for m in driver.values()]
    golden += [(m, "Firmware") for m in vbios.values()]
    golden.sort(key=lambda item: item[0].index)

    compared: list[int] = []
    skipped: list[int] = []
    mismatches: list[MismatchRecord] = []
    for entry, source in golden:
        if entry.index == NVDEC0_INDEX and nvdec0 == NVDEC0_DISABLED:
            skipped.append(entry.index)
            continue
        compared.append(entry.index)
        value = runtime.get(entry.index + 1)
        # Measurements are public values; compare_digest keeps the habit uniform and costs nothing.
        matched = (
            value is not None
            and len(value) == entry.size
            and any(hmac.compare_digest(value, alternative) for alternative in entry.hashes)
        )
        if not matched:
            mismatches.append(
                MismatchRecord(
                    index=entry.index,
                    golden_size=entry.size,
                    golden_values=entry.hashes,
                    runtime_size=0 if value is None else len(value),
                    runtime_value=value or b"",
                    source=source,
                )
            )
    return MeasurementComparison(
        compared=tuple(compared), skipped=tuple(skipped), mismatches=tuple(mismatches)
    )
