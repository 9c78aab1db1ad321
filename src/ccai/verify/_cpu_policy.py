"""CPU TEE rules over the claims that :func:`verify_tdx_quote` / :func:`verify_snp_report` produce,
and the default composite policy.

The rules judge claims, not parsed evidence, so a key broker applies the same rules to the CPU
claims of a verified token (``CPU-0``) as the verifier applies to a fresh quote. Claim names follow
the TDX / SEV-SNP spec fields (``mr_td``, ``rtmr0``, ``td_attributes``, ``measurement``,
``host_data``, ``reported_tcb``, ``vmpl`` …); ccai-only facts are ``x-ccai-*``
(``x-ccai-revocation-checked``, ``x-ccai-tcb-evaluated``, ``x-ccai-event-log-replayed``,
``x-ccai-trailing-data-zero``).

:func:`tdx_rules` and :func:`snp_rules` build the rule set from the options the old
``TdxPolicy`` / ``SnpPolicy`` objects had: safe by default (debug off, TDX status ``UpToDate``
only, revocation checked — for SEV-SNP too), every relaxation a named keyword. Reference-value
options are allow-lists: ``None`` means "not checked", an empty collection rejects everything.
:class:`ByTee` picks the TDX or SNP rule set by the claims' ``x-ccai-tee``.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ccai.errors import (
    BindingError,
    CollateralUnavailable,
    Error,
    MeasurementMismatch,
    PolicyViolation,
    TcbError,
    UsageError,
)
from ccai.verify._policy import (
    AllOf,
    Appraisal,
    ClaimEquals,
    DistinctGpus,
    MinGpus,
    NotSimulated,
    Policy,
    PolicyFailure,
    default_policy,
    no_cpu_claims,
)
from ccai.verify._ppcie_policy import PpcieMode, PpcieTopology, SwitchesVerified

__all__ = [
    "SNP_SPL_NAMES",
    "TDX_TCB_STATUSES",
    "ByTee",
    "CpuAllowList",
    "CpuDebugOff",
    "CpuReportData",
    "CpuRevocationChecked",
    "SnpGuest",
    "SnpTcb",
    "TdxAttributes",
    "TdxEventLogReplayed",
    "TdxNoTrailingData",
    "TdxTcb",
    "default_composite_policy",
    "snp_rules",
    "tdx_rules",
]

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
#: SPL names of an SEV-SNP TCB (AMD KDS query parameter names).
SNP_SPL_NAMES = frozenset({"blSPL", "teeSPL", "snpSPL", "ucodeSPL", "fmcSPL"})

_TEE = "x-ccai-tee"
_TDX, _SNP = "tdx", "sev-snp"
# The policy steps of TDX_STEPS / SNP_STEPS (checked equal by the tests).
_STEP = {_TDX: "(11) policy", _SNP: "(6) policy"}
_SEPT_VE_DISABLE = 1 << 28  # TDATTRIBUTES bit (TDX module ABI)
_DEBUG_CLAIM = {_TDX: "debug", _SNP: "policy_debug"}

#: Spec names of byte-valued CPU claims, for messages.
_SPEC_NAMES = {
    "mr_td": "MRTD",
    "mr_config_id": "MRCONFIGID",
    "mr_owner": "MROWNER",
    "mr_owner_config": "MROWNERCONFIG",
    "rtmr0": "RTMR0",
    "rtmr1": "RTMR1",
    "rtmr2": "RTMR2",
    "rtmr3": "RTMR3",
    "xfam": "XFAM",
    "td_attributes": "TDATTRIBUTES",
    "mr_seam": "MRSEAM",
    "measurement": "MEASUREMENT",
    "host_data": "HOST_DATA",
    "id_key_digest": "ID_KEY_DIGEST",
    "author_key_digest": "AUTHOR_KEY_DIGEST",
    "family_id": "FAMILY_ID",
    "image_id": "IMAGE_ID",
}


def _fail(
    rule: Policy,
    cpu: Mapping[str, Any],
    message: str,
    *,
    error: type[Error] = PolicyViolation,
    expected: Any = None,
    actual: Any = None,
    hint: str | None = None,
) -> tuple[PolicyFailure, ...]:
    return (
        PolicyFailure(
            rule=rule.describe(),
            message=message,
            error=error,
            expected=expected,
            actual=actual,
            step=_STEP.get(str(cpu.get(_TEE)), "policy"),
            cpu=True,
            hint=hint,
        ),
    )


def _hex_claim(cpu: Mapping[str, Any], name: str) -> bytes | None:
    value = cpu.get(name)
    if not isinstance(value, str):
        return None
    try:
        return bytes.fromhex(value)
    except ValueError:
        return None


def _int_claim(cpu: Mapping[str, Any], name: str) -> int | None:
    value = cpu.get(name)
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value, 0)
        except ValueError:
            return None
    return None


def _tee_of(cpu: Mapping[str, Any]) -> str:
    return str(cpu.get(_TEE))


@dataclass(frozen=True, slots=True, kw_only=True)
class ByTee:
    """The CPU claims must come from an accepted TEE and satisfy that TEE's rules.

    Attributes:
        tdx: Rules for Intel TDX claims (``x-ccai-tee: tdx``); ``None`` refuses TDX evidence.
        snp: Rules for AMD SEV-SNP claims (``x-ccai-tee: sev-snp``); ``None`` refuses SEV-SNP.
    """

    tdx: Policy | None = None
    snp: Policy | None = None

    def evaluate(self, appraisal: Appraisal) -> tuple[PolicyFailure, ...]:
        """See :class:`~ccai.verify.Policy`."""
        cpu = appraisal.cpu
        if cpu is None:
            return no_cpu_claims(self)
        tee = _tee_of(cpu)
        rules = {_TDX: self.tdx, _SNP: self.snp}.get(tee)
        if rules is None:
            accepted = [t for t, r in ((_TDX, self.tdx), (_SNP, self.snp)) if r is not None]
            return _fail(
                self, cpu, f"CPU TEE {tee!r} is not accepted by the policy", expected=accepted, actual=tee
            )
        return rules.evaluate(appraisal)

    def describe(self) -> str:
        """See :class:`~ccai.verify.Policy`."""
        parts = [f"{name}: {r.describe()}" for name, r in (("TDX", self.tdx), ("SEV-SNP", self.snp)) if r]
        return "CPU TEE (" + "; ".join(parts) + ")"


@dataclass(frozen=True, slots=True, kw_only=True)
class CpuDebugOff:
    """The guest must not be debuggable: TDX ``debug`` (TDATTRIBUTES.DEBUG) or SEV-SNP
    ``policy_debug`` (guest POLICY.DEBUG) is false."""

    def evaluate(self, appraisal: Appraisal) -> tuple[PolicyFailure, ...]:
        """See :class:`~ccai.verify.Policy`."""
        cpu = appraisal.cpu
        if cpu is None:
            return no_cpu_claims(self)
        tee = _tee_of(cpu)
        claim = _DEBUG_CLAIM.get(tee)
        if claim is None:
            return _fail(self, cpu, f"unknown CPU TEE {tee!r}", actual=tee)
        value = cpu.get(claim)
        if value is False:
            return ()
        if value is None:
            return _fail(self, cpu, f"claim {claim} is absent", expected=False)
        if tee == _TDX:
            return _fail(
                self,
                cpu,
                "TD is a debug TD (TDATTRIBUTES.DEBUG set)",
                expected="DEBUG clear",
                actual=f"td_attributes {cpu.get('td_attributes')}",
            )
        return _fail(
            self,
            cpu,
            "guest policy allows debugging (POLICY.DEBUG set)",
            expected="DEBUG clear",
            actual=f"POLICY {cpu.get('policy')}",
        )

    def describe(self) -> str:
        """See :class:`~ccai.verify.Policy`."""
        return "CPU guest not debuggable"


@dataclass(frozen=True, slots=True, kw_only=True)
class CpuRevocationChecked:
    """Revocation of the CPU TEE's certificates was checked (``x-ccai-revocation-checked``): the
    TDX Root CA and PCK CRLs, or the SEV-SNP ARK CRL. Missing CRLs raise
    :class:`~ccai.errors.CollateralUnavailable` — collateral, not bad evidence."""

    def evaluate(self, appraisal: Appraisal) -> tuple[PolicyFailure, ...]:
        """See :class:`~ccai.verify.Policy`."""
        cpu = appraisal.cpu
        if cpu is None:
            return no_cpu_claims(self)
        if cpu.get("x-ccai-revocation-checked") is True:
            return ()
        missing = cpu.get("x-ccai-revocation-unchecked") or ["the CRLs"]
        what = ", ".join(str(m) for m in missing)
        if _tee_of(cpu) == _SNP:
            message = f"revocation was not checked: no {what} was given, so the ASK/ASVK may be revoked"
            hint = 'give the ARK CRL (--crl, AMD KDS), or allow it by name: "allow_unchecked_revocation"'
        elif "collateral" in missing:
            message = "revocation was not checked: no TDX collateral given"
            hint = "pass --collateral FILE, or --signatures-only (allow_missing_collateral)"
        else:
            message = f"revocation was not checked: the collateral lacks the {what}"
            hint = '"allow_missing_pck_crl": true in the policy skips PCK revocation'
        return _fail(self, cpu, message, error=CollateralUnavailable, expected=True, actual=what, hint=hint)

    def describe(self) -> str:
        """See :class:`~ccai.verify.Policy`."""
        return "CPU certificate revocation checked"


@dataclass(frozen=True, slots=True, kw_only=True)
class CpuAllowList:
    """A byte-valued CPU claim (hex) must be one of ``values``, compared in constant time per
    candidate. An empty ``values`` rejects everything.

    Attributes:
        claim: The claim (``mr_td``, ``rtmr0`` … ``rtmr3``, ``mr_config_id``, ``mr_owner``,
            ``mr_owner_config``, ``xfam``, ``td_attributes``, ``measurement``, ``host_data``,
            ``id_key_digest``, ``author_key_digest`` …).
        values: The allowed values.
    """

    claim: str
    values: frozenset[bytes]

    def evaluate(self, appraisal: Appraisal) -> tuple[PolicyFailure, ...]:
        """See :class:`~ccai.verify.Policy`."""
        cpu = appraisal.cpu
        if cpu is None:
            return no_cpu_claims(self)
        name = _SPEC_NAMES.get(self.claim, self.claim)
        value = _hex_claim(cpu, self.claim)
        expected = " | ".join(sorted(v.hex() for v in self.values)) or "(empty allow-list)"
        if value is None:
            return _fail(
                self,
                cpu,
                f"{name} (claim {self.claim}) is absent",
                error=MeasurementMismatch,
                expected=expected,
            )
        if not any(hmac.compare_digest(value, v) for v in self.values):
            return _fail(
                self,
                cpu,
                f"{name} is not an allowed value",
                error=MeasurementMismatch,
                expected=expected,
                actual=value.hex(),
            )
        return ()

    def describe(self) -> str:
        """See :class:`~ccai.verify.Policy`."""
        return f"{self.claim} in an allow-list of {len(self.values)}"


@dataclass(frozen=True, slots=True, kw_only=True)
class CpuReportData:
    """The CPU report's REPORTDATA / REPORT_DATA (claim ``report_data``) equals ``value``
    (constant time).

    Attributes:
        value: The 64 bytes required.
    """

    value: bytes

    def evaluate(self, appraisal: Appraisal) -> tuple[PolicyFailure, ...]:
        """See :class:`~ccai.verify.Policy`."""
        cpu = appraisal.cpu
        if cpu is None:
            return no_cpu_claims(self)
        name = "REPORTDATA" if _tee_of(cpu) == _TDX else "REPORT_DATA"
        actual = _hex_claim(cpu, "report_data")
        if actual is None or not hmac.compare_digest(actual, self.value):
            return _fail(
                self,
                cpu,
                f"{name} differs from the expected value",
                error=BindingError,
                expected=self.value.hex(),
                actual=None if actual is None else actual.hex(),
            )
        return ()

    def describe(self) -> str:
        """See :class:`~ccai.verify.Policy`."""
        return f"report_data == {self.value.hex()[:16]}…"


@dataclass(frozen=True, slots=True, kw_only=True)
class TdxTcb:
    """Intel's TCB evaluation of a TDX platform is acceptable (``tcb_status``, ``advisory_ids``,
    ``tcb_evaluation_data_number``, ``x-ccai-tcb-evaluated``).

    Attributes:
        accepted_statuses: Converged TCB statuses to accept.
        rejected_advisory_ids: Intel-SA ids that fail the quote even under an accepted status.
        min_tcb_evaluation_data_number: Reject collateral older than this TCB-recovery event.
        allow_not_evaluated: Accept a quote whose TCB was not evaluated (no collateral:
            signatures-only mode).
    """

    accepted_statuses: frozenset[str] = frozenset({"UpToDate"})
    rejected_advisory_ids: frozenset[str] = frozenset()
    min_tcb_evaluation_data_number: int | None = None
    allow_not_evaluated: bool = False

    def __post_init__(self) -> None:
        unknown = set(self.accepted_statuses) - TDX_TCB_STATUSES
        if unknown:
            raise UsageError(f"unknown TDX TCB status(es) in policy: {', '.join(sorted(unknown))}")

    def evaluate(self, appraisal: Appraisal) -> tuple[PolicyFailure, ...]:
        """See :class:`~ccai.verify.Policy`."""
        cpu = appraisal.cpu
        if cpu is None:
            return no_cpu_claims(self)
        if cpu.get("x-ccai-tcb-evaluated") is not True:
            if self.allow_not_evaluated:
                return ()
            return _fail(
                self,
                cpu,
                "the TCB was not evaluated (no TDX collateral)",
                error=CollateralUnavailable,
                hint="pass --collateral FILE, or --signatures-only (allow_missing_collateral)",
            )
        status = cpu.get("tcb_status")
        advisories = [str(a) for a in cpu.get("advisory_ids") or []]
        if status not in self.accepted_statuses:
            return _fail(
                self,
                cpu,
                f"TCB status {status} is not accepted by the policy",
                error=TcbError,
                expected=" | ".join(sorted(self.accepted_statuses)),
                actual=f"{status} (tcbDate {cpu.get('tcb_date')}, {cpu.get('x-ccai-tcb-days-behind')} days "
                f"behind; advisories: {', '.join(advisories) or 'none'})",
            )
        bad = sorted(set(advisories) & self.rejected_advisory_ids)
        if bad:
            return _fail(
                self,
                cpu,
                "platform is affected by rejected advisories",
                error=TcbError,
                actual=", ".join(bad),
            )
        number = _int_claim(cpu, "tcb_evaluation_data_number")
        minimum = self.min_tcb_evaluation_data_number
        if minimum is not None and (number is None or number < minimum):
            return _fail(
                self,
                cpu,
                "collateral predates the required TCB recovery",
                error=TcbError,
                expected=f">= {minimum}",
                actual=number,
            )
        return ()

    def describe(self) -> str:
        """See :class:`~ccai.verify.Policy`."""
        text = f"TDX TCB status in {sorted(self.accepted_statuses)}"
        if self.rejected_advisory_ids:
            text += f", advisories not in {sorted(self.rejected_advisory_ids)}"
        if self.min_tcb_evaluation_data_number is not None:
            text += f", tcbEvaluationDataNumber >= {self.min_tcb_evaluation_data_number}"
        return text + (" (or not evaluated)" if self.allow_not_evaluated else "")


@dataclass(frozen=True, slots=True, kw_only=True)
class TdxAttributes:
    """TD attributes: SEPT_VE_DISABLE when required (``td_attributes``), and no bound service TD
    (``mr_servicetd`` absent or zero) unless allowed.

    Attributes:
        require_sept_ve_disable: Require TDATTRIBUTES.SEPT_VE_DISABLE (dcap-qvl's strict default).
        allow_mr_servicetd: Accept a non-zero MRSERVICETD.
    """

    require_sept_ve_disable: bool = False
    allow_mr_servicetd: bool = False

    def evaluate(self, appraisal: Appraisal) -> tuple[PolicyFailure, ...]:
        """See :class:`~ccai.verify.Policy`."""
        cpu = appraisal.cpu
        if cpu is None:
            return no_cpu_claims(self)
        attrs = _hex_claim(cpu, "td_attributes")
        if attrs is None:
            return _fail(self, cpu, "claim td_attributes is absent")
        if self.require_sept_ve_disable and not int.from_bytes(attrs, "little") & _SEPT_VE_DISABLE:
            return _fail(
                self, cpu, "TDATTRIBUTES.SEPT_VE_DISABLE is clear", actual=f"td_attributes {attrs.hex()}"
            )
        servicetd = _hex_claim(cpu, "mr_servicetd")
        if servicetd is not None and any(servicetd) and not self.allow_mr_servicetd:
            return _fail(self, cpu, "MRSERVICETD is not zero (a service TD is bound)", actual=servicetd.hex())
        return ()

    def describe(self) -> str:
        """See :class:`~ccai.verify.Policy`."""
        parts = ["SEPT_VE_DISABLE set"] if self.require_sept_ve_disable else []
        parts.append("MRSERVICETD any" if self.allow_mr_servicetd else "MRSERVICETD zero")
        return "TD attributes: " + ", ".join(parts)


@dataclass(frozen=True, slots=True, kw_only=True)
class TdxNoTrailingData:
    """No non-zero bytes follow the quote's signature data (``x-ccai-trailing-data-zero``)."""

    def evaluate(self, appraisal: Appraisal) -> tuple[PolicyFailure, ...]:
        """See :class:`~ccai.verify.Policy`."""
        cpu = appraisal.cpu
        if cpu is None:
            return no_cpu_claims(self)
        if cpu.get("x-ccai-trailing-data-zero") is True:
            return ()
        return _fail(
            self,
            cpu,
            "non-zero bytes follow the quote's signature data",
            actual=f"{cpu.get('x-ccai-trailing-data-length')} trailing bytes",
        )

    def describe(self) -> str:
        """See :class:`~ccai.verify.Policy`."""
        return "no trailing data after the quote"


@dataclass(frozen=True, slots=True, kw_only=True)
class TdxEventLogReplayed:
    """An event log was given and replayed to RTMR0..3 (``x-ccai-event-log-replayed``)."""

    def evaluate(self, appraisal: Appraisal) -> tuple[PolicyFailure, ...]:
        """See :class:`~ccai.verify.Policy`."""
        cpu = appraisal.cpu
        if cpu is None:
            return no_cpu_claims(self)
        if cpu.get("x-ccai-event-log-replayed") is True:
            return ()
        return _fail(self, cpu, "the policy requires an event log, and none was replayed")

    def describe(self) -> str:
        """See :class:`~ccai.verify.Policy`."""
        return "event log replayed"


@dataclass(frozen=True, slots=True, kw_only=True)
class SnpGuest:
    """SEV-SNP guest and platform settings: guest POLICY bits (``policy_migrate_ma``,
    ``policy_smt``), ``signing_key``, ``vmpl``, ``guest_svn``, ``platform_info``.

    Attributes:
        allow_migrate_ma: Accept a guest that allows a migration agent.
        allow_smt: Accept a guest policy that permits SMT.
        allowed_vmpls: VMPLs to accept; ``None`` accepts any (VMPL 1 is normal under an SVSM).
        allowed_signing_keys: ``"VCEK"`` and/or ``"VLEK"``.
        min_guest_svn: Minimum GUEST_SVN.
        required_platform_info: PLATFORM_INFO bits that must be set.
        forbidden_platform_info: PLATFORM_INFO bits that must be clear.
    """

    allow_migrate_ma: bool = False
    allow_smt: bool = True
    allowed_vmpls: frozenset[int] | None = None
    allowed_signing_keys: frozenset[str] = frozenset({"VCEK", "VLEK"})
    min_guest_svn: int | None = None
    required_platform_info: int = 0
    forbidden_platform_info: int = 0

    def __post_init__(self) -> None:
        if set(self.allowed_signing_keys) - {"VCEK", "VLEK"}:
            raise UsageError("allowed_signing_keys must be VCEK and/or VLEK")

    def evaluate(self, appraisal: Appraisal) -> tuple[PolicyFailure, ...]:
        """See :class:`~ccai.verify.Policy`."""
        cpu = appraisal.cpu
        if cpu is None:
            return no_cpu_claims(self)
        policy = f"POLICY {cpu.get('policy')}"
        if cpu.get("policy_migrate_ma") is not False and not self.allow_migrate_ma:
            return _fail(self, cpu, "guest policy allows a migration agent", actual=policy)
        if cpu.get("policy_smt") is not False and not self.allow_smt:
            return _fail(self, cpu, "guest policy allows SMT", actual=policy)
        key = cpu.get("signing_key")
        if key not in self.allowed_signing_keys:
            return _fail(
                self,
                cpu,
                f"{key}-signed reports are not accepted",
                expected=sorted(self.allowed_signing_keys),
                actual=key,
            )
        vmpl = _int_claim(cpu, "vmpl")
        if self.allowed_vmpls is not None and vmpl not in self.allowed_vmpls:
            return _fail(self, cpu, "VMPL is not allowed", expected=sorted(self.allowed_vmpls), actual=vmpl)
        svn = _int_claim(cpu, "guest_svn")
        if self.min_guest_svn is not None and (svn is None or svn < self.min_guest_svn):
            return _fail(
                self, cpu, "GUEST_SVN below the minimum", expected=f">= {self.min_guest_svn}", actual=svn
            )
        info = _int_claim(cpu, "platform_info")
        if info is None and (self.required_platform_info or self.forbidden_platform_info):
            return _fail(self, cpu, "claim platform_info is absent")
        missing = self.required_platform_info & ~(info or 0)
        if missing:
            return _fail(self, cpu, "required PLATFORM_INFO bits are clear", actual=f"missing 0x{missing:x}")
        present = self.forbidden_platform_info & (info or 0)
        if present:
            return _fail(self, cpu, "forbidden PLATFORM_INFO bits are set", actual=f"set 0x{present:x}")
        return ()

    def describe(self) -> str:
        """See :class:`~ccai.verify.Policy`."""
        parts = [
            "migration agent " + ("allowed" if self.allow_migrate_ma else "refused"),
            "SMT " + ("allowed" if self.allow_smt else "refused"),
            f"signing keys {sorted(self.allowed_signing_keys)}",
        ]
        if self.allowed_vmpls is not None:
            parts.append(f"VMPL in {sorted(self.allowed_vmpls)}")
        if self.min_guest_svn is not None:
            parts.append(f"GUEST_SVN >= {self.min_guest_svn}")
        if self.required_platform_info or self.forbidden_platform_info:
            required, forbidden = self.required_platform_info, self.forbidden_platform_info
            parts.append(f"PLATFORM_INFO set 0x{required:x} clear 0x{forbidden:x}")
        return "SEV-SNP guest: " + ", ".join(parts)


@dataclass(frozen=True, slots=True, kw_only=True)
class SnpTcb:
    """SEV-SNP TCB floors (``reported_tcb``, ``current_major``/``current_minor``,
    ``x-ccai-committed-equals-current``). AMD publishes no TCB-info service, so the floor is the
    relying party's.

    Attributes:
        min_tcb: Minimum SPLs of REPORTED_TCB by KDS name (``blSPL``, ``teeSPL``, ``snpSPL``,
            ``ucodeSPL``, ``fmcSPL``).
        min_firmware: Minimum (major, minor) of the CURRENT firmware.
        require_committed_tcb: Require COMMITTED_TCB == CURRENT_TCB (no provisional firmware).
    """

    min_tcb: Mapping[str, int] | None = None
    min_firmware: tuple[int, int] | None = None
    require_committed_tcb: bool = False

    def __post_init__(self) -> None:
        if self.min_tcb is not None and set(self.min_tcb) - SNP_SPL_NAMES:
            raise UsageError(f"min_tcb keys must be among {sorted(SNP_SPL_NAMES)}")

    def evaluate(self, appraisal: Appraisal) -> tuple[PolicyFailure, ...]:
        """See :class:`~ccai.verify.Policy`."""
        cpu = appraisal.cpu
        if cpu is None:
            return no_cpu_claims(self)
        if self.min_tcb is not None:
            reported = cpu.get("reported_tcb")
            reported = reported if isinstance(reported, Mapping) else {}
            below = {
                k: f"{reported.get(k)} < {v}"
                for k, v in self.min_tcb.items()
                if not isinstance(reported.get(k), int) or reported[k] < v
            }
            if below:
                return _fail(
                    self,
                    cpu,
                    "REPORTED_TCB is below the policy minimum",
                    error=TcbError,
                    expected=dict(self.min_tcb),
                    actual=below,
                )
        if self.require_committed_tcb and cpu.get("x-ccai-committed-equals-current") is not True:
            return _fail(
                self,
                cpu,
                "COMMITTED_TCB differs from CURRENT_TCB (provisional firmware)",
                error=TcbError,
                expected=cpu.get("current_tcb"),
                actual=cpu.get("committed_tcb"),
            )
        if self.min_firmware is not None:
            major, minor = _int_claim(cpu, "current_major"), _int_claim(cpu, "current_minor")
            if major is None or minor is None or (major, minor) < self.min_firmware:
                return _fail(
                    self,
                    cpu,
                    "firmware version below the minimum",
                    error=TcbError,
                    expected=">= {}.{}".format(*self.min_firmware),
                    actual=f"{major}.{minor}",
                )
        return ()

    def describe(self) -> str:
        """See :class:`~ccai.verify.Policy`."""
        parts = []
        if self.min_tcb is not None:
            parts.append(f"REPORTED_TCB >= {dict(self.min_tcb)}")
        if self.min_firmware is not None:
            parts.append("firmware >= {}.{}".format(*self.min_firmware))
        if self.require_committed_tcb:
            parts.append("COMMITTED_TCB == CURRENT_TCB")
        return "SEV-SNP TCB: " + (", ".join(parts) or "any")


def _byte_set(
    values: Iterable[bytes | str] | bytes | str | None, name: str, size: int
) -> frozenset[bytes] | None:
    if values is None:
        return None
    items = [values] if isinstance(values, bytes | str) else list(values)
    out: set[bytes] = set()
    for item in items:
        try:
            raw = bytes.fromhex(item) if isinstance(item, str) else bytes(item)
        except (TypeError, ValueError):
            raise UsageError(f"policy field {name!r} must be hex string(s) or bytes") from None
        if len(raw) != size:
            raise UsageError(f"policy field {name!r}: expected {size} bytes, got {len(raw)}")
        out.add(raw)
    return frozenset(out)


def _exact(value: bytes | str | None, name: str, size: int) -> bytes | None:
    found = _byte_set(value, name, size)
    return None if found is None else next(iter(found))


def tdx_rules(
    *,
    accepted_tcb_statuses: Iterable[str] = ("UpToDate",),
    rejected_advisory_ids: Iterable[str] = (),
    min_tcb_evaluation_data_number: int | None = None,
    allow_debug: bool = False,
    require_sept_ve_disable: bool = False,
    allow_mr_servicetd: bool = False,
    mr_td: Iterable[bytes | str] | None = None,
    mr_config_id: Iterable[bytes | str] | None = None,
    mr_owner: Iterable[bytes | str] | None = None,
    mr_owner_config: Iterable[bytes | str] | None = None,
    rtmr0: Iterable[bytes | str] | None = None,
    rtmr1: Iterable[bytes | str] | None = None,
    rtmr2: Iterable[bytes | str] | None = None,
    rtmr3: Iterable[bytes | str] | None = None,
    xfam: Iterable[bytes | str] | None = None,
    td_attributes: Iterable[bytes | str] | None = None,
    report_data: bytes | str | None = None,
    require_event_log: bool = False,
    allow_missing_collateral: bool = False,
    allow_missing_pck_crl: bool = False,
    allow_trailing_data: bool = False,
) -> AllOf:
    """The rules an Intel TDX quote's claims must satisfy beyond genuineness.

    The defaults reject a debug TD, any TCB status but ``UpToDate``, unchecked revocation or an
    unevaluated TCB (missing collateral), a bound service TD and non-zero trailing bytes.

    Args:
        accepted_tcb_statuses: Converged TCB statuses to accept.
        rejected_advisory_ids: Intel-SA advisory ids that fail the quote even under an accepted status.
        min_tcb_evaluation_data_number: Reject collateral older than this TCB-recovery event number.
        allow_debug: Accept a TD with the DEBUG attribute (never in production).
        require_sept_ve_disable: Require TDATTRIBUTES.SEPT_VE_DISABLE.
        allow_mr_servicetd: Accept a non-zero MRSERVICETD.
        mr_td, mr_config_id, mr_owner, mr_owner_config, rtmr0, rtmr1, rtmr2, rtmr3: Allowed values
            (48 bytes, hex or bytes); ``None`` = any.
        xfam, td_attributes: Allowed values (8 bytes); ``None`` = any.
        report_data: The exact REPORTDATA required (64 bytes).
        require_event_log: Require an event log that replayed to RTMR0..3.
        allow_missing_collateral: Signatures-only mode: accept an unevaluated TCB and unchecked
            revocation (no collateral).
        allow_missing_pck_crl: Accept collateral without the PCK / Root CA CRL (revocation unchecked).
        allow_trailing_data: Accept non-zero bytes after the signature data.

    Returns:
        The rules, as an :class:`~ccai.verify.AllOf` in the order failures are reported.

    Raises:
        UsageError: an unknown TCB status or a badly sized or encoded value.
    """
    rules: list[Policy] = [
        ClaimEquals(claim=_TEE, value=_TDX, scope="cpu"),
    ]
    if not (allow_missing_pck_crl or allow_missing_collateral):
        rules.append(CpuRevocationChecked())
    rules.append(
        TdxTcb(
            accepted_statuses=frozenset(accepted_tcb_statuses),
            rejected_advisory_ids=frozenset(rejected_advisory_ids),
            min_tcb_evaluation_data_number=min_tcb_evaluation_data_number,
            allow_not_evaluated=allow_missing_collateral,
        )
    )
    if require_event_log:
        rules.append(TdxEventLogReplayed())
    if not allow_debug:
        rules.append(CpuDebugOff())
    rules.append(
        TdxAttributes(require_sept_ve_disable=require_sept_ve_disable, allow_mr_servicetd=allow_mr_servicetd)
    )
    if not allow_trailing_data:
        rules.append(TdxNoTrailingData())
    for name, values, size in (
        ("mr_td", mr_td, 48),
        ("mr_config_id", mr_config_id, 48),
        ("mr_owner", mr_owner, 48),
        ("mr_owner_config", mr_owner_config, 48),
        ("rtmr0", rtmr0, 48),
        ("rtmr1", rtmr1, 48),
        ("rtmr2", rtmr2, 48),
        ("rtmr3", rtmr3, 48),
        ("xfam", xfam, 8),
        ("td_attributes", td_attributes, 8),
    ):
        allowed = _byte_set(values, name, size)
        if allowed is not None:
            rules.append(CpuAllowList(claim=name, values=allowed))
    exact = _exact(report_data, "report_data", 64)
    if exact is not None:
        rules.append(CpuReportData(value=exact))
    return AllOf(policies=tuple(rules))


def snp_rules(
    *,
    allow_debug: bool = False,
    allow_migrate_ma: bool = False,
    allow_smt: bool = True,
    allowed_vmpls: Iterable[int] | None = None,
    allowed_signing_keys: Iterable[str] = ("VCEK", "VLEK"),
    measurement: Iterable[bytes | str] | None = None,
    host_data: Iterable[bytes | str] | None = None,
    id_key_digest: Iterable[bytes | str] | None = None,
    author_key_digest: Iterable[bytes | str] | None = None,
    report_data: bytes | str | None = None,
    min_tcb: Mapping[str, int] | None = None,
    min_firmware: tuple[int, int] | None = None,
    require_committed_tcb: bool = False,
    required_platform_info: int = 0,
    forbidden_platform_info: int = 0,
    min_guest_svn: int | None = None,
    allow_unchecked_revocation: bool = False,
) -> AllOf:
    """The rules an AMD SEV-SNP report's claims must satisfy beyond genuineness.

    The defaults reject a debuggable guest, a migration agent and — like TDX — unchecked
    revocation: a report verified without the ARK CRL fails unless ``allow_unchecked_revocation``.

    Args:
        allow_debug: Accept GUEST_POLICY.DEBUG (never in production).
        allow_migrate_ma: Accept a guest that allows a migration agent.
        allow_smt: Accept a guest policy that permits SMT.
        allowed_vmpls: VMPLs to accept; ``None`` accepts any.
        allowed_signing_keys: ``"VCEK"`` and/or ``"VLEK"``.
        measurement: Allowed MEASUREMENT values (48 bytes).
        host_data: Allowed HOST_DATA values (32 bytes).
        id_key_digest, author_key_digest: Allowed digests (48 bytes).
        report_data: The exact REPORT_DATA required (64 bytes).
        min_tcb: Minimum SPLs of REPORTED_TCB by KDS name.
        min_firmware: Minimum (major, minor) of the CURRENT firmware.
        require_committed_tcb: Require COMMITTED_TCB == CURRENT_TCB.
        required_platform_info: PLATFORM_INFO bits that must be set.
        forbidden_platform_info: PLATFORM_INFO bits that must be clear.
        min_guest_svn: Minimum GUEST_SVN.
        allow_unchecked_revocation: Accept a report whose ASK/ASVK revocation was not checked (no
            ARK CRL). Unsafe outside tests and air-gapped inspection.

    Returns:
        The rules, as an :class:`~ccai.verify.AllOf` in the order failures are reported.

    Raises:
        UsageError: bad ``min_tcb`` names, signing keys, or a badly sized or encoded value.
    """
    rules: list[Policy] = [ClaimEquals(claim=_TEE, value=_SNP, scope="cpu")]
    if not allow_debug:
        rules.append(CpuDebugOff())
    rules.append(
        SnpGuest(
            allow_migrate_ma=allow_migrate_ma,
            allow_smt=allow_smt,
            allowed_vmpls=None if allowed_vmpls is None else frozenset(int(v) for v in allowed_vmpls),
            allowed_signing_keys=frozenset(allowed_signing_keys),
            min_guest_svn=min_guest_svn,
            required_platform_info=required_platform_info,
            forbidden_platform_info=forbidden_platform_info,
        )
    )
    for name, values, size in (
        ("measurement", measurement, 48),
        ("host_data", host_data, 32),
        ("id_key_digest", id_key_digest, 48),
        ("author_key_digest", author_key_digest, 48),
    ):
        allowed = _byte_set(values, name, size)
        if allowed is not None:
            rules.append(CpuAllowList(claim=name, values=allowed))
    if min_tcb is not None or min_firmware is not None or require_committed_tcb:
        rules.append(
            SnpTcb(
                min_tcb=None if min_tcb is None else {str(k): int(v) for k, v in min_tcb.items()},
                min_firmware=None if min_firmware is None else (int(min_firmware[0]), int(min_firmware[1])),
                require_committed_tcb=require_committed_tcb,
            )
        )
    exact = _exact(report_data, "report_data", 64)
    if exact is not None:
        rules.append(CpuReportData(value=exact))
    # Last, so that a report with a policy problem reports that problem, not missing collateral.
    if not allow_unchecked_revocation:
        rules.append(CpuRevocationChecked())
    return AllOf(policies=tuple(rules))


def default_composite_policy(
    *,
    gpu: Policy | None = None,
    tdx: Policy | None = None,
    snp: Policy | None = None,
    allow_no_gpus: bool = False,
    allow_simulated: bool = False,
    ppcie: bool = False,
    switch: Policy | None = None,
) -> AllOf:
    """ccai's default appraisal of composite evidence (CPU TEE + GPUs [+ NVSwitches]).

    In order: not simulated; the CPU claims satisfy :func:`tdx_rules` or :func:`snp_rules` (by
    TEE); at least one GPU (unless ``allow_no_gpus``); distinct GPUs; every GPU satisfies
    :func:`~ccai.verify.default_policy`; with ``ppcie`` also the protected-PCIe rules: every
    NVSwitch verified, every GPU in PPCIe mode, an HGX topology of 8 GPUs and 4 NVSwitches.

    Args:
        gpu: The per-GPU rules (default :func:`~ccai.verify.default_policy`).
        tdx: Rules for TDX claims (default :func:`tdx_rules`).
        snp: Rules for SEV-SNP claims (default :func:`snp_rules`).
        allow_no_gpus: Accept evidence without GPUs (a CPU-only deployment; or use
            :class:`~ccai.verify.CpuOnly` to require exactly that).
        allow_simulated: Leave out :class:`~ccai.verify.NotSimulated` (development policies).
        ppcie: Add the protected-PCIe rules (the default for bundles carrying NVSwitch evidence).
        switch: The NVSwitch rule with ``ppcie`` (default :class:`~ccai.verify.SwitchesVerified`).

    Returns:
        The policy.
    """
    rules: list[Policy] = [] if allow_simulated else [NotSimulated()]
    rules.append(
        ByTee(tdx=tdx if tdx is not None else tdx_rules(), snp=snp if snp is not None else snp_rules())
    )
    if not allow_no_gpus:
        rules.append(MinGpus(minimum=1))
    rules.append(DistinctGpus())
    rules.append(gpu if gpu is not None else default_policy(allow_simulated=allow_simulated))
    if ppcie:
        rules += [switch if switch is not None else SwitchesVerified(), PpcieMode(), PpcieTopology()]
    return AllOf(policies=tuple(rules))
