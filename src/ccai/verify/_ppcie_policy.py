"""Policy rules for NVSwitch claims and protected-PCIe (PPCIe) systems, in the one claims model.

Like every rule of :mod:`ccai.verify._policy`, these read claims only, so the same rule judges a
fresh :meth:`~ccai.verify.Verifier.verify_ppcie` result and the claims of a verified token:

* :class:`SwitchesVerified`: every NVSwitch's measurements match its BIOS RIM and its certificate
  chains' revocation status is good (with the same allowances as :class:`RevocationGood`).
* :class:`PpcieMode`: every GPU is in protected-PCIe mode (signed FEATURE_FLAG ``ppcie`` and
  PROTECTED_PCIE_STATUS ``enabled``).
* :class:`PpcieTopology`: the GPUs and switches form one consistent system, as NVIDIA's
  ppcie-verifier requires: the expected counts; every GPU links to the same set of switches,
  which is exactly the set of switches whose evidence was verified (no unknown switch, no missing
  link); every switch lists the same ``gpus`` distinct GPUs.

GPU claims carry the switch PDIs byte-reversed back to the switch's own order
(``x-nvidia-gpu-switch-pdis``, as NRAS computes it), switch claims their own PDI
(``x-ccai-switch-pdi``), so the two compare directly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ccai.errors import (
    CertificateRevoked,
    ChainError,
    CollateralUnavailable,
    Error,
    MeasurementMismatch,
    UsageError,
)
from ccai.verify._policy import (
    AllOf,
    Appraisal,
    NotSimulated,
    Policy,
    PolicyFailure,
    default_policy,
)

__all__ = [
    "SWITCH_CHAIN_CLAIMS",
    "PpcieMode",
    "PpcieTopology",
    "SwitchesVerified",
    "default_ppcie_policy",
    "default_switch_policy",
]

#: The two certificate-chain objects of switch claims 3.0.
SWITCH_CHAIN_CLAIMS = (
    "x-nvidia-switch-attestation-report-cert-chain",
    "x-nvidia-switch-bios-rim-cert-chain",
)
STEP_MODE = "(3) protected-PCIe mode"
STEP_TOPOLOGY = "(4) topology"
_GPU_SWITCH_PDIS = "x-nvidia-gpu-switch-pdis"
_SWITCH_PDI = "x-ccai-switch-pdi"
_SWITCH_GPU_PDIS = "x-ccai-switch-gpu-pdis"


def _switch_failure(rule: str, switch: int | None, message: str, **kw: Any) -> PolicyFailure:
    where = "" if switch is None else f"SWITCH-{switch}: "
    return PolicyFailure(rule=rule, message=f"{where}{message}", **kw)


@dataclass(frozen=True, slots=True, kw_only=True)
class SwitchesVerified:
    """Every NVSwitch's measurements match and its chains' revocation status is good.

    Attributes:
        allow_not_checked: Accept revocation ``not-checked`` (offline without OCSP responses).
        allow_reasons: Revocation reasons to tolerate (e.g. ``{"certificateHold"}``).
        allow_unknown: Accept an OCSP ``unknown`` status.
        allowed_mismatch_indices: BIOS RIM indices allowed to mismatch.
    """

    allow_not_checked: bool = False
    allow_reasons: frozenset[str] = field(default_factory=frozenset)
    allow_unknown: bool = False
    allowed_mismatch_indices: frozenset[int] = field(default_factory=frozenset)

    def evaluate(self, appraisal: Appraisal) -> tuple[PolicyFailure, ...]:
        """See :class:`~ccai.verify.Policy`."""
        rule = self.describe()
        if not appraisal.switches:
            return (_switch_failure(rule, None, "no NVSwitch claims to judge", expected=">= 1", actual=0),)
        out: list[PolicyFailure] = []
        for i, claims in enumerate(appraisal.switches):
            out += self._chains(rule, i, claims)
            if claims.get("measres") != "success":
                records = claims.get("x-nvidia-mismatch-measurement-records") or []
                bad = sorted(
                    int(r["index"])
                    for r in records
                    if isinstance(r, Mapping) and r.get("index") not in self.allowed_mismatch_indices
                )
                if bad or not records:
                    out.append(
                        _switch_failure(
                            rule,
                            i,
                            f"switch BIOS measurements differ from the RIM at indices {bad}"
                            if bad
                            else f"measurement result is {claims.get('measres')!r}",
                            error=MeasurementMismatch,
                            expected="success",
                            actual=claims.get("measres"),
                            step="(9) measurements",
                            index=f"measurement index {bad[0]}" if bad else None,
                        )
                    )
        return tuple(out)

    def _chains(self, rule: str, i: int, claims: Mapping[str, Any]) -> list[PolicyFailure]:
        out = []
        for name in SWITCH_CHAIN_CLAIMS:
            chain = claims.get(name)
            if not isinstance(chain, Mapping):
                continue  # claims 2.0: the flat *-validated booleans
            status = chain.get("x-nvidia-cert-ocsp-status")
            reason = chain.get("x-nvidia-cert-revocation-reason")
            error: type[Error] | None = None
            if status == "good":
                continue
            if status == "not-checked" and not self.allow_not_checked:
                error = CollateralUnavailable
            elif status == "revoked" and reason not in self.allow_reasons:
                error = CertificateRevoked
            elif status == "unknown" and not self.allow_unknown:
                error = ChainError
            if error is not None:
                out.append(
                    _switch_failure(
                        rule,
                        i,
                        f"{name} OCSP status is {status!r}" + (f" (reason {reason})" if reason else ""),
                        error=error,
                        expected="good",
                        actual=status,
                        step="(5) revocation",
                    )
                )
        return out

    def describe(self) -> str:
        """See :class:`~ccai.verify.Policy`."""
        extras = []
        if self.allow_not_checked:
            extras.append("revocation not-checked allowed")
        if self.allow_reasons:
            extras.append(f"reasons {sorted(self.allow_reasons)} allowed")
        if self.allowed_mismatch_indices:
            extras.append(f"mismatch at {sorted(self.allowed_mismatch_indices)} allowed")
        return "NVSwitch measurements match and chains good" + (f" ({', '.join(extras)})" if extras else "")


@dataclass(frozen=True, slots=True, kw_only=True)
class PpcieMode:
    """Every GPU is in protected-PCIe mode: FEATURE_FLAG ``ppcie`` and PPCIe status ``enabled``."""

    def evaluate(self, appraisal: Appraisal) -> tuple[PolicyFailure, ...]:
        """See :class:`~ccai.verify.Policy`."""
        if not appraisal.gpus:
            return (
                PolicyFailure(
                    rule=self.describe(), message="no GPU claims to judge", step=STEP_MODE, expected=">= 1"
                ),
            )
        out = []
        for gpu, claims in enumerate(appraisal.gpus):
            flag = claims.get("x-ccai-gpu-feature-flag")
            status = claims.get("x-ccai-gpu-ppcie-status")
            if flag == "ppcie" and status == "enabled":
                continue
            out.append(
                PolicyFailure(
                    rule=self.describe(),
                    message=f"the GPU is not in protected-PCIe mode (FEATURE_FLAG {flag}, "
                    f"PROTECTED_PCIE_STATUS {status})",
                    gpu=gpu,
                    expected="FEATURE_FLAG ppcie, PROTECTED_PCIE_STATUS enabled",
                    actual=f"{flag}, {status}",
                    step=STEP_MODE,
                    hint="enable protected PCIe on every GPU of the system (all or none)",
                )
            )
        return tuple(out)

    def describe(self) -> str:
        """See :class:`~ccai.verify.Policy`."""
        return "every GPU in protected-PCIe mode"


def _strings(value: Any) -> list[str] | None:
    if not isinstance(value, Sequence) or isinstance(value, str):
        return None
    if not all(isinstance(v, str) for v in value):
        return None
    return [v.upper() for v in value]


@dataclass(frozen=True, slots=True, kw_only=True)
class PpcieTopology:
    """The GPUs and NVSwitches form one consistent protected-PCIe system.

    Attributes:
        gpus: GPUs the system must have (HGX: 8).
        switches: NVSwitches the system must have (HGX H100/H200: 4).
    """

    gpus: int = 8
    switches: int = 4

    def __post_init__(self) -> None:
        if self.gpus < 1 or self.switches < 1:
            raise UsageError("a PPCIe topology has at least one GPU and one switch")

    def _fail(self, message: str, *, gpu: int | None = None, **kw: Any) -> tuple[PolicyFailure, ...]:
        return (PolicyFailure(rule=self.describe(), message=message, gpu=gpu, step=STEP_TOPOLOGY, **kw),)

    def evaluate(self, appraisal: Appraisal) -> tuple[PolicyFailure, ...]:
        """See :class:`~ccai.verify.Policy`."""
        switches = appraisal.switches
        if len(appraisal.gpus) != self.gpus:
            return self._fail(
                f"the system has {len(appraisal.gpus)} GPUs; protected PCIe needs {self.gpus}",
                expected=self.gpus,
                actual=len(appraisal.gpus),
            )
        if len(switches) != self.switches:
            return self._fail(
                f"evidence of {len(switches)} NVSwitches; the system needs {self.switches} "
                "(a switch is missing or was not attested)",
                expected=self.switches,
                actual=len(switches),
            )
        known: dict[str, int] = {}
        for i, claims in enumerate(switches):
            pdi = claims.get(_SWITCH_PDI)
            if not isinstance(pdi, str):
                return self._fail(f"SWITCH-{i}: the switch report carries no DEVICE_PDI", actual=None)
            if pdi.upper() in known:
                return self._fail(
                    f"SWITCH-{i} and SWITCH-{known[pdi.upper()]} report the same PDI {pdi}",
                    actual=pdi,
                )
            known[pdi.upper()] = i
        for gpu, claims in enumerate(appraisal.gpus):
            linked = _strings(claims.get(_GPU_SWITCH_PDIS))
            if linked is None:
                return self._fail(
                    "the GPU reports no NVSwitch links (x-nvidia-gpu-switch-pdis)", gpu=gpu, actual=None
                )
            unknown = sorted(set(linked) - set(known))
            if unknown:
                return self._fail(
                    f"the GPU is linked to NVSwitch PDI {unknown[0]}, which is not one of the "
                    "verified switches (unknown switch)",
                    gpu=gpu,
                    expected=sorted(known),
                    actual=unknown,
                )
            missing = sorted(set(known) - set(linked))
            if missing:
                return self._fail(
                    f"the GPU has no link to NVSwitch {missing[0]} "
                    f"(SWITCH-{known[missing[0]]}; missing link)",
                    gpu=gpu,
                    expected=sorted(known),
                    actual=sorted(set(linked)),
                )
        reference: set[str] | None = None
        for i, claims in enumerate(switches):
            listed = _strings(claims.get(_SWITCH_GPU_PDIS))
            distinct = set(listed or ())
            if len(distinct) != self.gpus:
                return self._fail(
                    f"SWITCH-{i} is connected to {len(distinct)} distinct GPUs; expected {self.gpus}",
                    expected=self.gpus,
                    actual=len(distinct),
                )
            if reference is None:
                reference = distinct
            elif distinct != reference:
                return self._fail(
                    f"SWITCH-{i} lists other GPUs than SWITCH-0 (the switches do not share one GPU set)",
                    expected=sorted(reference),
                    actual=sorted(distinct),
                )
        return ()

    def describe(self) -> str:
        """See :class:`~ccai.verify.Policy`."""
        return f"protected-PCIe topology of {self.gpus} GPUs and {self.switches} NVSwitches"


def default_switch_policy(
    *,
    allow_unchecked_revocation: bool = False,
    allowed_mismatch_indices: Sequence[int] = (),
    allowed_revocation_reasons: Sequence[str] = (),
    allow_simulated: bool = False,
) -> AllOf:
    """ccai's default NVSwitch appraisal: measurements match, revocation good, not simulated.

    Args:
        allow_unchecked_revocation: Accept chains whose revocation was not checked (offline).
        allowed_mismatch_indices: BIOS RIM indices that may mismatch.
        allowed_revocation_reasons: Revocation reasons to tolerate.
        allow_simulated: Leave out :class:`~ccai.verify.NotSimulated`.

    Returns:
        The policy.
    """
    rule = SwitchesVerified(
        allow_not_checked=allow_unchecked_revocation,
        allow_reasons=frozenset(allowed_revocation_reasons),
        allowed_mismatch_indices=frozenset(allowed_mismatch_indices),
    )
    return AllOf(policies=(rule,) if allow_simulated else (rule, NotSimulated()))


def default_ppcie_policy(
    *,
    gpus: int = 8,
    switches: int = 4,
    allow_unchecked_revocation: bool = False,
    allowed_mismatch_indices: Sequence[int] = (),
    allowed_revocation_reasons: Sequence[str] = (),
    allow_simulated: bool = False,
    gpu: Policy | None = None,
) -> AllOf:
    """ccai's default protected-PCIe appraisal: the GPU rules, the switch rules, PPCIe mode on
    every GPU and the topology.

    Args:
        gpus: GPUs the system must have.
        switches: NVSwitches the system must have.
        allow_unchecked_revocation: Accept unchecked revocation (GPUs and switches).
        allowed_mismatch_indices: RIM indices that may mismatch (GPUs and switches).
        allowed_revocation_reasons: Revocation reasons to tolerate.
        allow_simulated: Leave out :class:`~ccai.verify.NotSimulated`.
        gpu: The GPU rules (default :func:`~ccai.verify.default_policy` with these allowances).

    Returns:
        The policy.
    """
    gpu_rules = gpu or default_policy(
        allow_unchecked_revocation=allow_unchecked_revocation,
        allowed_mismatch_indices=allowed_mismatch_indices,
        allowed_revocation_reasons=allowed_revocation_reasons,
        allow_simulated=allow_simulated,
    )
    return AllOf(
        policies=(
            gpu_rules,
            SwitchesVerified(
                allow_not_checked=allow_unchecked_revocation,
                allow_reasons=frozenset(allowed_revocation_reasons),
                allowed_mismatch_indices=frozenset(allowed_mismatch_indices),
            ),
            PpcieMode(),
            PpcieTopology(gpus=gpus, switches=switches),
        )
    )
