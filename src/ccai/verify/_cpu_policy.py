"""Appraisal policies for CPU TEE evidence: frozen objects, safe by default.

The defaults reject what every production verifier rejects (a debug TD or debuggable SNP guest,
any TCB status other than ``UpToDate``, missing collateral). Every relaxation is an explicit field
whose name says what it permits. Reference-value fields are allow-lists: ``None`` means "not
checked", an empty set would reject everything.

Policies load from JSON (``--policy FILE``) through :meth:`TdxPolicy.from_mapping` /
:meth:`SnpPolicy.from_mapping`; byte values are hex strings there.
"""

from __future__ import annotations

import dataclasses
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ccai.errors import MeasurementMismatch, UsageError

__all__ = ["TDX_TCB_STATUSES", "SnpPolicy", "TdxPolicy", "check_allowed"]

#: TCB statuses Intel's TCB Info and QE Identity use (``TcbLevelCheck.cpp``).
TDX_TCB_STATUSES = frozenset(
    {
        "UpToDate",
        "SWHardeningNeeded",
        "ConfigurationNeeded",
        "ConfigurationAndSWHardeningNeeded",
        "OutOfDate",
        "OutOfDateConfigurationNeeded",
        "Revoked",
        "TDRelaunchAdvised",
        "TDRelaunchAdvisedConfigurationNeeded",
    }
)

_SNP_SPL_NAMES = frozenset({"blSPL", "teeSPL", "snpSPL", "ucodeSPL", "fmcSPL"})


def _hexset(value: Any, name: str, size: int | None) -> frozenset[bytes] | None:
    if value is None:
        return None
    items = [value] if isinstance(value, str) else value
    out: set[bytes] = set()
    try:
        for item in items:
            raw = bytes.fromhex(item) if isinstance(item, str) else bytes(item)
            if size is not None and len(raw) != size:
                raise ValueError(f"expected {size} bytes, got {len(raw)}")
            out.add(raw)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"policy field {name!r} must be hex string(s): {exc}") from None
    return frozenset(out)


def _hexbytes(value: Any, name: str, size: int) -> bytes | None:
    found = _hexset(value, name, size)
    if found is None:
        return None
    if len(found) != 1:
        raise UsageError(f"policy field {name!r} takes exactly one value")
    return next(iter(found))


def _build(cls: type[Any], data: Mapping[str, Any], converters: Mapping[str, Any]) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise UsageError(f"unknown {cls.__name__} field(s): {', '.join(sorted(unknown))}")
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        conv = converters.get(key)
        kwargs[key] = conv(value, key) if conv else value
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise UsageError(f"bad {cls.__name__}: {exc}") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class TdxPolicy:
    """What an Intel TDX quote must satisfy beyond genuineness.

    Attributes:
        accepted_tcb_statuses: Converged TCB statuses to accept (default only ``UpToDate``).
        rejected_advisory_ids: Intel-SA advisory ids that fail the quote even under an accepted status.
        min_tcb_evaluation_data_number: Reject collateral older than this TCB-recovery event number.
        allow_debug: Accept a TD with the DEBUG attribute (never in production).
        require_sept_ve_disable: Require TDATTRIBUTES.SEPT_VE_DISABLE (dcap-qvl's strict default).
        allow_mr_servicetd: Accept a non-zero MRSERVICETD (a bound service TD).
        mr_td, mr_config_id, mr_owner, mr_owner_config: Allowed values (48 bytes each); ``None`` = any.
        rtmr0, rtmr1, rtmr2, rtmr3: Allowed RTMR values; ``None`` = any.
        report_data: The exact REPORTDATA required (compared in constant time).
        require_event_log: Fail unless an event log is given and replays to RTMR0..3.
        allow_missing_collateral: Verify signatures only, skipping CRLs and TCB evaluation.
        allow_missing_pck_crl: Evaluate without the PCK CRL (PCK revocation then unchecked).
        allow_trailing_data: Accept non-zero bytes after the signature data.
    """

    accepted_tcb_statuses: frozenset[str] = frozenset({"UpToDate"})
    rejected_advisory_ids: frozenset[str] = frozenset()
    min_tcb_evaluation_data_number: int | None = None
    allow_debug: bool = False
    require_sept_ve_disable: bool = False
    allow_mr_servicetd: bool = False
    mr_td: frozenset[bytes] | None = None
    mr_config_id: frozenset[bytes] | None = None
    mr_owner: frozenset[bytes] | None = None
    mr_owner_config: frozenset[bytes] | None = None
    rtmr0: frozenset[bytes] | None = None
    rtmr1: frozenset[bytes] | None = None
    rtmr2: frozenset[bytes] | None = None
    rtmr3: frozenset[bytes] | None = None
    report_data: bytes | None = None
    require_event_log: bool = False
    allow_missing_collateral: bool = False
    allow_missing_pck_crl: bool = False
    allow_trailing_data: bool = False

    def __post_init__(self) -> None:
        unknown = set(self.accepted_tcb_statuses) - TDX_TCB_STATUSES
        if unknown:
            raise UsageError(f"unknown TDX TCB status(es) in policy: {', '.join(sorted(unknown))}")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> TdxPolicy:
        """Build a policy from JSON-style data (hex strings for byte values).

        Raises:
            UsageError: unknown fields or badly encoded values.
        """
        conv: dict[str, Any] = {
            "accepted_tcb_statuses": lambda v, _n: frozenset(v),
            "rejected_advisory_ids": lambda v, _n: frozenset(v),
            "report_data": lambda v, n: _hexbytes(v, n, 64),
        }
        for name in (
            "mr_td",
            "mr_config_id",
            "mr_owner",
            "mr_owner_config",
            "rtmr0",
            "rtmr1",
            "rtmr2",
            "rtmr3",
        ):
            conv[name] = lambda v, n: _hexset(v, n, 48)
        policy: TdxPolicy = _build(cls, data, conv)
        return policy


@dataclass(frozen=True, slots=True, kw_only=True)
class SnpPolicy:
    """What an AMD SEV-SNP report must satisfy beyond genuineness.

    Attributes:
        allow_debug: Accept GUEST_POLICY.DEBUG (never in production).
        allow_migrate_ma: Accept a guest that allows a migration agent.
        allow_smt: Accept a guest policy that permits SMT.
        allowed_vmpls: VMPLs to accept; ``None`` accepts any (VMPL 1 is normal under a paravisor/SVSM).
        allowed_signing_keys: ``"VCEK"`` and/or ``"VLEK"``.
        measurement: Allowed MEASUREMENT values (48 bytes).
        host_data: Allowed HOST_DATA values (32 bytes).
        id_key_digest, author_key_digest: Allowed digests (48 bytes).
        report_data: The exact REPORT_DATA required (compared in constant time).
        min_tcb: Minimum SPLs of the REPORTED_TCB by KDS name (``blSPL``, ``teeSPL``, ``snpSPL``,
            ``ucodeSPL``, ``fmcSPL``); AMD publishes no TCB-info service, so the floor is the
            relying party's.
        min_firmware: Minimum (major, minor) of CURRENT firmware.
        require_committed_tcb: Require COMMITTED_TCB == CURRENT_TCB (no provisional firmware).
        required_platform_info: PLATFORM_INFO bits that must be set (e.g. ALIAS_CHECK_COMPLETE).
        forbidden_platform_info: PLATFORM_INFO bits that must be clear (e.g. SMT_EN).
        min_guest_svn: Minimum GUEST_SVN.
    """

    allow_debug: bool = False
    allow_migrate_ma: bool = False
    allow_smt: bool = True
    allowed_vmpls: frozenset[int] | None = None
    allowed_signing_keys: frozenset[str] = frozenset({"VCEK", "VLEK"})
    measurement: frozenset[bytes] | None = None
    host_data: frozenset[bytes] | None = None
    id_key_digest: frozenset[bytes] | None = None
    author_key_digest: frozenset[bytes] | None = None
    report_data: bytes | None = None
    min_tcb: Mapping[str, int] | None = None
    min_firmware: tuple[int, int] | None = None
    require_committed_tcb: bool = False
    required_platform_info: int = 0
    forbidden_platform_info: int = 0
    min_guest_svn: int | None = None

    def __post_init__(self) -> None:
        if self.min_tcb is not None and set(self.min_tcb) - _SNP_SPL_NAMES:
            raise UsageError(f"min_tcb keys must be among {sorted(_SNP_SPL_NAMES)}")
        if set(self.allowed_signing_keys) - {"VCEK", "VLEK"}:
            raise UsageError("allowed_signing_keys must be VCEK and/or VLEK")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> SnpPolicy:
        """Build a policy from JSON-style data (hex strings for byte values).

        Raises:
            UsageError: unknown fields or badly encoded values.
        """
        conv: dict[str, Any] = {
            "allowed_vmpls": lambda v, _n: frozenset(int(x) for x in v),
            "allowed_signing_keys": lambda v, _n: frozenset(v),
            "measurement": lambda v, n: _hexset(v, n, 48),
            "host_data": lambda v, n: _hexset(v, n, 32),
            "id_key_digest": lambda v, n: _hexset(v, n, 48),
            "author_key_digest": lambda v, n: _hexset(v, n, 48),
            "report_data": lambda v, n: _hexbytes(v, n, 64),
            "min_tcb": lambda v, _n: {str(k): int(x) for k, x in dict(v).items()},
            "min_firmware": lambda v, _n: (int(v[0]), int(v[1])),
        }
        policy: SnpPolicy = _build(cls, data, conv)
        return policy


def check_allowed(name: str, value: bytes, allowed: frozenset[bytes] | None, *, step: str) -> None:
    """Check a measured value against a policy allow-list, in constant time per candidate.

    Args:
        name: The field's spec name (``MRTD``, ``MEASUREMENT``), for the error.
        value: The value the evidence carries.
        allowed: The allow-list; ``None`` means "not checked", an empty set rejects everything.
        step: The checklist step, for the error.

    Raises:
        MeasurementMismatch: ``value`` is not in ``allowed``.
    """
    if allowed is not None and not any(hmac.compare_digest(value, a) for a in allowed):
        raise MeasurementMismatch(
            f"{name} is not an allowed value",
            step=step,
            expected=" | ".join(sorted(a.hex() for a in allowed)) or "(empty allow-list)",
            actual=value.hex(),
        )
