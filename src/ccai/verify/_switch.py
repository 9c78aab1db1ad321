"""Verify NVIDIA NVSwitch (LS10) evidence: the GPU checklist's steps, for the switch's report.

:meth:`ccai.verify.Verifier.verify_switch` runs, over every switch (gpu-evidence.md §9.3, §16.3):

(1)  device certificate chain → pinned ``NVIDIA Device Identity CA``: the LS10 shape ``LS_10 … FSP
     FMC LF`` → ``LS_10 … FSP BROM`` → ``NVIDIA LS_10 Provisioner ICA`` → ``NVIDIA … Identity`` →
     root, 5 certificates, exactly as for GPUs
(2)  report signature: ECDSA P-384 / SHA-384 over the raw bytes, before anything is parsed
(3)  report contents and FWID: the signed report is an NVSwitch report (ASCII BIOS version,
     switch opaque types) and its FWID, when it carries one, equals the leaf's
(4)  nonce: the signed request nonce equals the verifier's (constant time)

then, with collateral fetched for the **signed** report's RIM id only:

(5)  revocation of the device chain (OCSP, as for GPUs)
(6)  RIM selection: ``NV_SWITCH_BIOS_5612_0002_890_<BIOS>`` from the signed BIOS version
(7)  RIM authentication: signing chain → pinned ``NVIDIA CoRIM signing Root CA``, validity at
     ``now``, enveloped XMLDSig (a broken digest or a relabelled RIM fails here), revocation
(8)  RIM version and product: ``colloquialVersion`` equals the signed BIOS version, product ``LS10``
(9)  measurements: the BIOS RIM's active golden values vs the report's blocks
(10) claims: NVIDIA's switch claims 3.0 (``x-nvidia-switch-…``, as NRAS ``/v4/attest/switch``
     emits them) or 2.0 (``/v3``), plus ``x-ccai-switch-…`` topology claims
(11) policy appraisal over the switch claims

Step names 1–9 are the GPU checklist's, so renderers and error steps read the same for both.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from ccai.collateral import GpuCollateral
from ccai.errors import (
    Error,
    MalformedEvidence,
    NonceMismatch,
    UnsupportedEvidence,
    UsageError,
)
from ccai.evidence import AttestationReport, GpuEvidence, device_arch, parse_cert_chain, vbios_rim_id
from ccai.verify._caches import VerifierCaches
from ccai.verify._claims import CLAIMS_VERSIONS, ChainFacts, overall_claims
from ccai.verify._gpu import (
    STEP_CHAIN,
    STEP_FWID,
    STEP_MEASUREMENTS,
    STEP_NONCE,
    STEP_REVOCATION,
    STEP_RIM_AUTH,
    STEP_RIM_MATCH,
    STEP_RIM_SELECT,
    STEP_SIGNATURE,
    _chain_step,
    _fwid_step,
    _revocation,
    _rim_for,
    _rim_match_step,
    _signature_step,
)
from ccai.verify._gpu_certs import VerifiedChain, common_name
from ccai.verify._measurements import MeasurementComparison, compare_measurements
from ccai.verify._policy import DEFER_APPRAISAL, Appraisal, Policy, appraise
from ccai.verify._result import VerifiedEvidence, VerifiedSwitch, _issue
from ccai.verify._rim_check import check_rim
from ccai.verify._steps import Steps
from ccai.verify._trust import TrustAnchors

__all__ = [
    "SWITCH_STEPS",
    "AuthenticatedSwitch",
    "SwitchCollateralFetcher",
    "SwitchFacts",
    "authenticate_switches",
    "run_switch_checklist",
    "switch_claims",
]

STEP_SWITCH_CLAIMS = "(10) claims"
STEP_SWITCH_POLICY = "(11) policy"

#: The switch checklist, in order.
SWITCH_STEPS = (
    STEP_CHAIN,
    STEP_SIGNATURE,
    STEP_FWID,
    STEP_NONCE,
    STEP_REVOCATION,
    STEP_RIM_SELECT,
    STEP_RIM_AUTH,
    STEP_RIM_MATCH,
    STEP_MEASUREMENTS,
    STEP_SWITCH_CLAIMS,
    STEP_SWITCH_POLICY,
)

_NONCE_SIZE = 32
_LS10_PRODUCT = "LS10"


@contextmanager
def _on_switch(index: int) -> Iterator[None]:
    """Errors raised inside name the switch they are about."""
    try:
        yield
    except Error as exc:
        if not exc.message.startswith("SWITCH-"):
            exc.message = f"SWITCH-{index}: {exc.message}"
            exc.args = (exc.message,)
        raise


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthenticatedSwitch:
    """One switch's evidence after steps (1)–(4): chain, signature, contents, nonce.

    Attributes:
        index: Position in the evidence list.
        item: The evidence as given.
        chain: The built path (leaf first, pinned root last).
        report: The report, parsed after its signature verified.
        fwid_match: The leaf FWID equals the report's (true when the report carries none).
    """

    index: int
    item: GpuEvidence
    chain: VerifiedChain
    report: AttestationReport
    fwid_match: bool

    @property
    def arch(self) -> str:
        """Always ``LS10``."""
        return "LS10"

    def rim_id(self) -> str:
        """The BIOS RIM id named by the signed report (``NV_SWITCH_BIOS_…``)."""
        return vbios_rim_id(self.report)

    def with_built_chain(self) -> GpuEvidence:
        """The evidence item with its chain replaced by the built path (for collateral gathering)."""
        pem = b"".join(c.public_bytes(Encoding.PEM) for c in self.chain.certificates)
        return GpuEvidence(arch="LS10", nonce=self.item.nonce, report=self.item.report, certificate_chain=pem)


#: Fetches the collateral of authenticated switches (a :class:`~ccai.verify.Verifier` with a source).
SwitchCollateralFetcher = Callable[[Sequence[AuthenticatedSwitch], Steps], GpuCollateral]


@dataclass(frozen=True, slots=True, kw_only=True)
class SwitchFacts:
    """Everything the checklist established for one switch, from which claims are written.

    Attributes:
        index: Position in the evidence list.
        nonce: The verifier nonce.
        bios_version: Signed BIOS version (``96.10.55.00.01``).
        hwmodel: CN of certificate [1] of the device chain (``LS_10 A01 FSP BROM``).
        ueid: Leaf certificate serial number (decimal).
        fwid_match: FWID check result.
        device_chain: Facts about the device chain.
        bios_rim_chain: Facts about the BIOS RIM chain.
        bios_rim_id: The BIOS RIM id.
        comparison: The measurement comparison.
        simulated: True for ccai's virtual test PKI.
        device_pdi: The switch's own PDI (DEVICE_PDI, as signed), or None.
        gpu_pdis: The GPU PDIs the switch lists (SWITCH_GPU_PDIS).
        lock_status: SWITCH_LOCK_STATUS (raw) or None.
        warnings: Human warnings (e.g. a tolerated certificate hold).
    """

    index: int
    nonce: bytes
    bios_version: str
    hwmodel: str
    ueid: str
    fwid_match: bool
    device_chain: ChainFacts
    bios_rim_chain: ChainFacts
    bios_rim_id: str
    comparison: MeasurementComparison
    simulated: bool
    device_pdi: bytes | None
    gpu_pdis: tuple[bytes, ...]
    lock_status: bytes | None
    warnings: tuple[str, ...] = ()


def switch_claims(f: SwitchFacts, *, version: str = "3.0") -> dict[str, Any]:
    """The claims of ``SWITCH-<index>`` with NRAS's names.

    Args:
        f: What the checklist established.
        version: ``"3.0"`` (NRAS v4) or ``"2.0"`` (NRAS v3, flat booleans).

    Returns:
        A JSON-serialisable dict.

    Raises:
        UsageError: an unknown claims version.
    """
    success = f.comparison.success
    common: dict[str, Any] = {
        "measres": "success" if success else "fail",
        "x-nvidia-switch-arch-check": True,
        "x-nvidia-switch-bios-version": f.bios_version,
        "x-nvidia-switch-attestation-report-parsed": True,
        "x-nvidia-switch-attestation-report-nonce-match": True,
        "x-nvidia-switch-attestation-report-signature-verified": True,
        "x-nvidia-switch-bios-rim-fetched": True,
        "x-nvidia-switch-bios-rim-schema-validated": True,
        "x-nvidia-switch-bios-rim-signature-verified": True,
        "x-nvidia-switch-bios-rim-measurements-available": True,
        "eat_nonce": f.nonce.hex(),
        "hwmodel": f.hwmodel,
        "ueid": f.ueid,
        # NRAS writes null for switches (the BIOS RIM's manufacturer id is not reported).
        "oemid": None,
    }
    warning = "; ".join(f.warnings) if f.warnings else None
    if version == "3.0":
        claims = {
            **common,
            "x-nvidia-switch-attestation-report-cert-chain": f.device_chain.as_claim(),
            "x-nvidia-switch-attestation-report-cert-chain-fwid-match": f.fwid_match,
            "x-nvidia-switch-bios-rim-cert-chain": f.bios_rim_chain.as_claim(),
            "x-nvidia-switch-bios-rim-version-match": True,
            "secboot": True if success else None,
            "dbgstat": "disabled" if success else None,
            "x-nvidia-attestation-warning": warning,
            "x-nvidia-mismatch-measurement-records": (
                None if success else [r.as_claim() for r in f.comparison.mismatches]
            ),
        }
    elif version == "2.0":
        claims = {
            **common,
            "x-nvidia-switch-attestation-report-cert-chain-validated": True,
            "x-nvidia-switch-bios-rim-cert-validated": True,
        }
        if success:
            claims["secboot"] = True
            claims["dbgstat"] = "disabled"
        if warning:
            claims["x-nvidia-attestation-warning"] = warning
    else:
        raise UsageError(f"unknown claims version {version!r}", expected=list(CLAIMS_VERSIONS))
    claims.update(
        {
            "x-ccai-simulated": f.simulated,
            "x-ccai-switch-bios-rim-id": f.bios_rim_id,
            # The PDI as the switch signs it; GPUs list it byte-reversed (x-nvidia-gpu-switch-pdis
            # is already reversed back, so the two compare equal).
            "x-ccai-switch-pdi": None if f.device_pdi is None else f.device_pdi.hex().upper(),
            "x-ccai-switch-gpu-pdis": sorted({p.hex().upper() for p in f.gpu_pdis if any(p)}),
            "x-ccai-switch-lock-status": None if f.lock_status is None else f.lock_status.hex(),
            "x-ccai-measurements": {
                "compared": list(f.comparison.compared),
                "skipped": list(f.comparison.skipped),
            },
        }
    )
    return claims


def _check_arguments(
    evidence: Sequence[GpuEvidence],
    *,
    nonce: bytes,
    now: datetime,
    anchors: TrustAnchors,
    allow_simulated: bool,
    claims_version: str,
) -> None:
    if len(nonce) != _NONCE_SIZE:
        raise UsageError("the verifier nonce must be 32 bytes", expected=_NONCE_SIZE, actual=len(nonce))
    if claims_version not in CLAIMS_VERSIONS:
        raise UsageError(f"unknown claims version {claims_version!r}", expected=list(CLAIMS_VERSIONS))
    if allow_simulated and (not anchors.simulated or anchors.gpu is None):
        raise UsageError("allow_simulated=True needs the virtual hardware's test-PKI anchors")
    if not evidence:
        raise UsageError("no NVSwitch evidence to verify")
    if now.tzinfo is None:
        raise UsageError("now must be timezone-aware")


def authenticate_switches(
    evidence: Sequence[GpuEvidence],
    *,
    nonce: bytes,
    now: datetime,
    anchors: TrustAnchors,
    allow_simulated: bool,
    caches: VerifierCaches | None,
    steps: Steps,
) -> list[AuthenticatedSwitch]:
    """Steps (1)–(4) for every switch: chain, signature over the raw bytes, contents, nonce.

    Raises:
        EvidenceError, VerificationError: the first failed step, naming the switch.
    """
    steps.begin(STEP_CHAIN)
    chains: list[VerifiedChain] = []
    for index, item in enumerate(evidence):
        with _on_switch(index):
            try:
                supplied = (
                    caches.parse_chain(item.certificate_chain)
                    if caches is not None
                    else parse_cert_chain(item.certificate_chain)
                )
            except MalformedEvidence as exc:
                raise MalformedEvidence(exc.message, step=STEP_CHAIN, index=exc.index) from None
            chains.append(
                _chain_step(
                    supplied, now=now, anchors=anchors, allow_simulated=allow_simulated, caches=caches
                )
            )
    first = chains[0].certificates
    simulated = any(c.anchors.simulated for c in chains)
    steps.ok(
        STEP_CHAIN,
        f"{len(chains)} switch(es): {common_name(first[1])} → pinned root"
        + (" (SIMULATED test PKI)" if simulated else ""),
    )

    steps.begin(STEP_SIGNATURE)
    for index, (item, chain) in enumerate(zip(evidence, chains, strict=True)):
        with _on_switch(index):
            _signature_step(item.report, chain.certificates[0])
    steps.ok(STEP_SIGNATURE, "ECDSA P-384 / SHA-384 by the attestation key")

    steps.begin(STEP_FWID)
    parsed: list[tuple[AttestationReport, bool]] = []
    for index, (item, chain) in enumerate(zip(evidence, chains, strict=True)):
        with _on_switch(index):
            report, fwid_match = _fwid_step(item.report, chain.certificates[0])
            arch = device_arch(report)
            if arch != "LS10":
                raise UnsupportedEvidence(
                    f"this is {arch} GPU evidence, not NVSwitch evidence", step=STEP_FWID, actual=arch
                )
            if item.arch and item.arch.upper() != "LS10":
                raise MalformedEvidence(
                    f"the evidence item says arch {item.arch}, the signed report is an LS10 NVSwitch",
                    step=STEP_FWID,
                    expected="LS10",
                    actual=item.arch,
                )
            parsed.append((report, fwid_match))
    steps.ok(STEP_FWID, "LS10 report; FWID matches the leaf certificate")

    steps.begin(STEP_NONCE)
    for index, (report, _) in enumerate(parsed):
        with _on_switch(index):
            if not hmac.compare_digest(report.nonce, nonce):
                raise NonceMismatch(
                    "the report is not bound to this verifier nonce",
                    step=STEP_NONCE,
                    expected=nonce.hex(),
                    actual=report.nonce.hex(),
                )
    steps.ok(STEP_NONCE, f"eat_nonce {nonce.hex()[:16]}…")
    return [
        AuthenticatedSwitch(index=i, item=item, chain=chain, report=report, fwid_match=fwid)
        for i, (item, chain, (report, fwid)) in enumerate(zip(evidence, chains, parsed, strict=True))
    ]


def _appraise(
    authenticated: Sequence[AuthenticatedSwitch],
    collateral: GpuCollateral,
    *,
    nonce: bytes,
    now: datetime,
    caches: VerifierCaches | None,
    steps: Steps,
) -> list[SwitchFacts]:
    rim_cache = caches.rims if caches is not None else None
    ocsp_cache = caches.ocsp if caches is not None else None

    def roots(a: AuthenticatedSwitch) -> list[x509.Certificate]:
        return [*a.chain.anchors.device_roots, *a.chain.anchors.rim_roots]

    steps.begin(STEP_REVOCATION)
    device_facts: list[ChainFacts] = []
    for a in authenticated:
        with _on_switch(a.index):
            device_facts.append(
                _revocation(
                    a.chain.certificates,
                    collateral,
                    now=now,
                    device=True,
                    roots=roots(a),
                    expiration=a.chain.expiration,
                    cache=ocsp_cache,
                )
            )
    steps.ok(STEP_REVOCATION, f"device chain OCSP {device_facts[0].ocsp_status}")

    steps.begin(STEP_RIM_SELECT)
    selected: list[tuple[str, bytes]] = []
    for a in authenticated:
        with _on_switch(a.index):
            try:
                rim_id = a.rim_id()
            except Error as exc:
                exc.step = STEP_RIM_SELECT
                raise
            selected.append((rim_id, _rim_for(collateral, rim_id, "switch BIOS")))
    steps.ok(STEP_RIM_SELECT, selected[0][0])

    steps.begin(STEP_RIM_AUTH)
    checked = []
    for a, (rim_id, xml) in zip(authenticated, selected, strict=True):
        with _on_switch(a.index):
            rim = check_rim(
                rim_id,
                xml,
                anchors=[a.chain.anchors],
                now=now,
                step=STEP_RIM_AUTH,
                what=f"switch BIOS RIM {rim_id}",
                cache=rim_cache,
            )
            facts = _revocation(
                rim.chain,
                collateral,
                now=now,
                device=False,
                roots=roots(a),
                expiration=rim.expiration,
                cache=ocsp_cache,
            )
            checked.append((rim, facts))
    steps.ok(STEP_RIM_AUTH, f"BIOS RIM OCSP {checked[0][1].ocsp_status}")

    steps.begin(STEP_RIM_MATCH)
    for a, (rim, _) in zip(authenticated, checked, strict=True):
        with _on_switch(a.index):
            _rim_match_step(
                rim,
                expected_version=a.report.opaque_data.vbios_version or "",
                product=_LS10_PRODUCT,
                kind="switch BIOS",
            )
    steps.ok(STEP_RIM_MATCH, f"BIOS {authenticated[0].report.opaque_data.vbios_version or ''}")

    steps.begin(STEP_MEASUREMENTS)
    out: list[SwitchFacts] = []
    for a, device, (rim, rim_facts), (rim_id, _) in zip(
        authenticated, device_facts, checked, selected, strict=True
    ):
        with _on_switch(a.index):
            comparison = compare_measurements(a.report, driver_rim=None, vbios_rim=rim.rim)
        opaque = a.report.opaque_data
        certs = a.chain.certificates
        warnings = tuple(
            f"{name} certificate chain is revoked with reason {facts.revocation_reason}"
            for name, facts in (("device", device), ("BIOS RIM", rim_facts))
            if facts.ocsp_status == "revoked"
        )
        out.append(
            SwitchFacts(
                index=a.index,
                nonce=nonce,
                bios_version=(opaque.vbios_version or "").upper(),
                hwmodel=common_name(certs[1]),
                ueid=str(certs[0].serial_number),
                fwid_match=a.fwid_match,
                device_chain=device,
                bios_rim_chain=rim_facts,
                bios_rim_id=rim_id,
                comparison=comparison,
                simulated=a.chain.anchors.simulated,
                device_pdi=opaque.device_pdi,
                gpu_pdis=opaque.switch_gpu_pdis or (),
                lock_status=opaque.switch_lock_status,
                warnings=warnings,
            )
        )
    first = out[0].comparison
    mismatches = [r.index for r in first.mismatches]
    steps.ok(
        STEP_MEASUREMENTS,
        f"{len(first.compared)} compared, measres {'success' if first.success else 'fail'}"
        + (f", mismatches at {mismatches}" if mismatches else ""),
    )
    return out


def run_switch_checklist(
    evidence: Sequence[GpuEvidence],
    *,
    nonce: bytes,
    now: datetime,
    collateral: GpuCollateral | SwitchCollateralFetcher,
    policy: Policy,
    anchors: TrustAnchors,
    allow_simulated: bool,
    claims_version: str,
    caches: VerifierCaches | None,
) -> VerifiedEvidence:
    """Run the whole switch checklist (for :meth:`ccai.verify.Verifier.verify_switch`).

    ``collateral`` is the collateral itself or a fetcher called after steps 1–4. Any
    :class:`~ccai.errors.Error` raised carries the per-step results.
    """
    _check_arguments(
        evidence,
        nonce=nonce,
        now=now,
        anchors=anchors,
        allow_simulated=allow_simulated,
        claims_version=claims_version,
    )
    steps = Steps(SWITCH_STEPS)
    try:
        authenticated = authenticate_switches(
            evidence,
            nonce=nonce,
            now=now,
            anchors=anchors,
            allow_simulated=allow_simulated,
            caches=caches,
            steps=steps,
        )
        gathered = collateral if isinstance(collateral, GpuCollateral) else collateral(authenticated, steps)
        facts = _appraise(authenticated, gathered, nonce=nonce, now=now, caches=caches, steps=steps)

        steps.begin(STEP_SWITCH_CLAIMS)
        per_switch = tuple(switch_claims(f, version=claims_version) for f in facts)
        simulated = any(f.simulated for f in facts)
        overall = overall_claims(nonce=nonce, version=claims_version, gpus=per_switch, simulated=simulated)
        steps.ok(STEP_SWITCH_CLAIMS, f"claims {claims_version}")

        steps.begin(STEP_SWITCH_POLICY)
        if policy is DEFER_APPRAISAL:
            steps.skip(STEP_SWITCH_POLICY, "deferred to the system appraisal")
        else:
            appraise(policy, Appraisal(overall=overall, switches=per_switch, allow_simulated=allow_simulated))
            steps.ok(STEP_SWITCH_POLICY, "satisfied")
    except Error as exc:
        steps.attach(exc)
        raise
    return _issue(
        nonce=bytes(nonce),
        gpus=(),
        switches=tuple(VerifiedSwitch(index=i, claims=c) for i, c in enumerate(per_switch)),
        overall_claims=overall,
        verified_at=now,
        simulated=simulated,
        claims_version=claims_version,
        steps=steps.results(),
    )
