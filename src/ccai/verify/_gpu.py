"""Verify NVIDIA GPU evidence: one numbered checklist, no I/O, ``now`` injected.

:func:`verify_gpu_evidence` (and :meth:`ccai.verify.Verifier.verify_gpu`) run, step by step over
every GPU (gpu-evidence.md §2.2, §15):

(1)  device certificate chain → pinned ``NVIDIA Device Identity CA`` (validity at ``now``:
     :class:`~ccai.errors.CertificateExpired`; simulated roots only with ``allow_simulated``;
     leaf first, intermediates in any order, root optional, a path of exactly 5 certificates)
(2)  report signature: ECDSA P-384 / SHA-384 over everything but the last 96 bytes, raw ``r‖s``,
     with the leaf key — **before** the report is parsed, as NVAT does, so that any change to the
     signed bytes reads as a signature failure and never reaches a parser
(3)  report contents and FWID: parse the authenticated report; the leaf certificate's FWID
     (Hopper or Blackwell encoding) must equal opaque TLV 20 when the report carries one
(4)  nonce: the signed request nonce equals the verifier's nonce (constant time)

Steps 1–4 need nothing but the evidence. Only then is collateral looked at — and, for a
:class:`~ccai.verify.Verifier` with a collateral source, fetched — for the RIM ids of the **signed**
reports and the OCSP targets of the **built** device paths. So a forged or unbound report fails at
its own step even when collateral is unavailable, and only genuine-looking evidence can end in
:class:`~ccai.errors.CollateralUnavailable`.

(5)  revocation of the device chain (OCSP responses from the collateral; ``not-checked`` when the
     collateral deliberately has none — the policy decides whether that is acceptable)
(6)  RIM selection: driver and VBIOS RIM ids built from the **signed** opaque data
(7)  RIM authentication: signing chain → pinned ``NVIDIA CoRIM signing Root CA``, validity at
     ``now``, enveloped XMLDSig, and the RIM chains' revocation
(8)  RIM version and product match the report (``colloquialVersion``, ``product``)
(9)  measurement comparison → ``x-nvidia-mismatch-measurement-records``

then, over all GPUs:

(10) multi-GPU mode: all GPUs single-GPU passthrough, or none (mixed SPT/MPT is refused)
(11) claims (NVIDIA claims 3.0, or 2.0 on request)
(12) policy appraisal: the first failure raises its error class

A :class:`~ccai.verify._caches.VerifierCaches` passed in keeps verified chains and RIM signatures
by the exact bytes verified; time-dependent checks always run.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding

from ccai.collateral import GpuCollateral
from ccai.errors import (
    ChainError,
    CollateralUnavailable,
    Error,
    FwidMismatch,
    MalformedEvidence,
    NonceMismatch,
    PolicyViolation,
    RimMismatch,
    SignatureError,
    SimulatedEvidenceRejected,
    UnsupportedEvidence,
    UsageError,
)
from ccai.evidence import (
    AttestationReport,
    GpuEvidence,
    device_arch,
    driver_rim_id,
    parse_attestation_report,
    parse_cert_chain,
    vbios_rim_id,
)
from ccai.verify._anchors import GpuTrustAnchors
from ccai.verify._caches import VerifierCaches
from ccai.verify._claims import (
    _FEATURE_NAMES,
    CLAIMS_VERSIONS,
    ChainFacts,
    GpuFacts,
    gpu_claims,
    overall_claims,
)
from ccai.verify._gpu_certs import VerifiedChain, common_name, leaf_fwid, verify_device_chain
from ccai.verify._measurements import compare_measurements
from ccai.verify._ocsp_check import OcspCache, check_chain_ocsp
from ccai.verify._policy import DEFER_APPRAISAL, Appraisal, Policy, appraise, default_policy
from ccai.verify._result import VerifiedEvidence, VerifiedGpu, _issue
from ccai.verify._rim_check import CheckedRim, check_rim
from ccai.verify._steps import Steps
from ccai.verify._trust import TrustAnchors, names_test_pki

__all__ = ["GPU_STEPS", "AuthenticatedGpu", "CollateralFetcher", "run_gpu_checklist", "verify_gpu_evidence"]

STEP_CHAIN = "(1) device certificate chain"
STEP_SIGNATURE = "(2) report signature"
STEP_FWID = "(3) report contents and FWID"
STEP_NONCE = "(4) nonce"
STEP_REVOCATION = "(5) revocation"
STEP_RIM_SELECT = "(6) RIM selection"
STEP_RIM_AUTH = "(7) RIM signature and chain"
STEP_RIM_MATCH = "(8) RIM version and product"
STEP_MEASUREMENTS = "(9) measurements"
STEP_MODES = "(10) multi-GPU mode"
STEP_CLAIMS = "(11) claims"
STEP_POLICY = "(12) policy"

#: The checklist, in order (the CLI prints it as a ✓/✗ table).
GPU_STEPS = (
    STEP_CHAIN,
    STEP_SIGNATURE,
    STEP_FWID,
    STEP_NONCE,
    STEP_REVOCATION,
    STEP_RIM_SELECT,
    STEP_RIM_AUTH,
    STEP_RIM_MATCH,
    STEP_MEASUREMENTS,
    STEP_MODES,
    STEP_CLAIMS,
    STEP_POLICY,
)

_SIGNATURE_SIZE = 96
_SPDM_REQUEST_SIZE = 37
_NONCE_SIZE = 32
_SPT = 0  # FEATURE_FLAG: single-GPU passthrough
_ALL_REASONS = frozenset(r.value for r in x509.ReasonFlags)
_CC_MODES = ("on", "devtools", "off")


def _gpu_error(exc: Error, gpu: int) -> Error:
    """Prefix an error with the GPU it is about (keeps class, step and context)."""
    if exc.message.startswith("GPU-"):
        return exc
    exc.message = f"GPU-{gpu}: {exc.message}"
    exc.args = (exc.message,)
    return exc


@contextmanager
def _on_gpu(gpu: int) -> Iterator[None]:
    """Errors raised inside name the GPU they are about."""
    try:
        yield
    except Error as exc:
        raise _gpu_error(exc, gpu) from None


def _gpu_anchor_sets(anchors: TrustAnchors) -> list[GpuTrustAnchors]:
    """The GPU root sets to try: the caller's; a test PKI only next to the pinned NVIDIA roots."""
    if not anchors.simulated:
        if anchors.gpu is None:
            raise UsageError(f"the trust anchors {anchors.name!r} hold no GPU roots")
        return [anchors.gpu]
    vendor = TrustAnchors.vendor().gpu
    assert vendor is not None  # the pinned set always has them
    return [vendor] if anchors.gpu is None else [vendor, anchors.gpu]


def _chain_step(
    certs: Sequence[x509.Certificate],
    *,
    now: datetime,
    anchors: TrustAnchors,
    allow_simulated: bool,
    caches: VerifierCaches | None,
) -> VerifiedChain:
    hint = "pass allow_simulated=True (CLI: --allow-simulated) to verify virtual-GPU evidence"
    try:
        chain = verify_device_chain(
            certs,
            anchors=_gpu_anchor_sets(anchors),
            now=now,
            step=STEP_CHAIN,
            cache=caches.device_chains if caches is not None else None,
        )
    except ChainError as exc:
        if type(exc) is ChainError and names_test_pki(certs) and not allow_simulated:
            raise SimulatedEvidenceRejected(
                "the device chain is issued by ccai's virtual-GPU test PKI, not by NVIDIA",
                step=STEP_CHAIN,
                actual=common_name(certs[-1]),
                hint=hint,
            ) from None
        raise
    if chain.anchors.simulated and not allow_simulated:
        raise SimulatedEvidenceRejected(
            f"the device chain leads to {chain.anchors.name!r}, a simulated root",
            step=STEP_CHAIN,
            actual=common_name(chain.certificates[-1]),
            hint=hint,
        )
    return chain


def _signature_step(raw: bytes, leaf: x509.Certificate) -> None:
    # Only the trailing 96-byte signature is located; nothing else of the report is read until
    # the signature over the rest has verified.
    if len(raw) <= _SPDM_REQUEST_SIZE + _SIGNATURE_SIZE:
        raise MalformedEvidence(
            f"attestation report is {len(raw)} bytes, too short to hold a request and a signature",
            step=STEP_SIGNATURE,
        )
    key = leaf.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp384r1":
        raise SignatureError(
            "the attestation leaf key is not an ECDSA P-384 key", step=STEP_SIGNATURE, index=0
        )
    sig = raw[-_SIGNATURE_SIZE:]
    der = encode_dss_signature(int.from_bytes(sig[:48], "big"), int.from_bytes(sig[48:], "big"))
    try:
        key.verify(der, raw[:-_SIGNATURE_SIZE], ec.ECDSA(hashes.SHA384()))
    except InvalidSignature:
        raise SignatureError(
            f"attestation report signature does not verify with the key of {common_name(leaf)!r}",
            step=STEP_SIGNATURE,
            index=0,
            expected="ECDSA P-384/SHA-384 by the attestation leaf",
            actual=f"r‖s {sig[:8].hex()}…",
            hint="the report was changed, or it belongs to another GPU than this certificate chain",
        ) from None


def _fwid_step(raw: bytes, leaf: x509.Certificate) -> tuple[AttestationReport, bool]:
    try:
        report = parse_attestation_report(raw)
    except MalformedEvidence as exc:
        raise MalformedEvidence(exc.message, step=STEP_FWID, index=exc.index) from None
    reported = report.opaque_data.fwid
    if reported is None:
        # Reports of 535/545-era drivers carry no FWID; NVIDIA's verifiers then skip the check.
        return report, True
    certified = leaf_fwid(leaf)
    if certified is None:
        raise FwidMismatch(
            "the report carries an FWID but the leaf certificate has no FWID extension",
            step=STEP_FWID,
            index=0,
            expected=reported.hex(),
        )
    if not hmac.compare_digest(certified, reported):
        raise FwidMismatch(
            "the leaf certificate's FWID differs from the report's FWID (opaque TLV 20)",
            step=STEP_FWID,
            index=0,
            expected=certified.hex(),
            actual=reported.hex(),
        )
    return report, True


def _revocation(
    chain: Sequence[x509.Certificate],
    collateral: GpuCollateral,
    *,
    now: datetime,
    device: bool,
    roots: Sequence[x509.Certificate],
    expiration: datetime,
    cache: OcspCache | None = None,
) -> ChainFacts:
    if not collateral.ocsp_checked:
        return ChainFacts(expiration=expiration, ocsp_status="not-checked")
    # Record revoked/unknown instead of raising here: the policy decides (a certificate hold can
    # be tolerated by name); broken or missing responses still raise.
    statuses = check_chain_ocsp(
        chain,
        collateral,
        now=now,
        skip_leaf=device,
        trusted_roots=roots,
        allow_revocation_reasons=_ALL_REASONS,
        allow_unknown=True,
        cache=cache,
    )
    # Report the first non-good status from the root side, as NVAT does.
    for status in reversed(statuses):
        if status.status.value != "good":
            return ChainFacts(
                expiration=expiration,
                ocsp_status=status.status.value,
                revocation_reason=status.revocation_reason,
            )
    return ChainFacts(expiration=expiration, ocsp_status="good")


def _expected_product(arch: str, report: AttestationReport) -> str:
    if arch == "HOPPER":
        return "GH100"
    return report.opaque_data.chip_info or "GB100"


def _rim_match_step(checked: CheckedRim, *, expected_version: str, product: str, kind: str) -> None:
    rim = checked.rim
    if rim.colloquial_version.strip().lower() != expected_version.strip().lower():
        raise RimMismatch(
            f"{kind} RIM {checked.rim_id} is for version {rim.colloquial_version}, "
            f"the report says {expected_version}",
            step=STEP_RIM_MATCH,
            expected=expected_version,
            actual=rim.colloquial_version,
        )
    if rim.product.upper() != product.upper():
        raise RimMismatch(
            f"{kind} RIM {checked.rim_id} is for product {rim.product}, the report is a {product}",
            step=STEP_RIM_MATCH,
            expected=product,
            actual=rim.product,
        )


def _rim_for(collateral: GpuCollateral, rim_id: str, kind: str) -> bytes:
    xml = collateral.rims.get(rim_id)
    if xml is None:
        raise CollateralUnavailable(
            f"the collateral has no {kind} RIM {rim_id}",
            step=STEP_RIM_SELECT,
            expected=rim_id,
            actual=", ".join(sorted(collateral.rims)) or "no RIMs",
            hint="fetch it from the RIM service, pass --driver-rim/--vbios-rim or --rim-dir, or use a bundle",
        )
    return xml


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthenticatedGpu:
    """One GPU's evidence after the evidence-only steps (1)–(4): chain, signature, contents, nonce.

    Attributes:
        index: Position in the evidence list.
        item: The evidence as given.
        chain: The path built from the leaf to the pinned root (leaf first).
        report: The parsed report — parsed only after its signature verified.
        arch: ``HOPPER`` or ``BLACKWELL`` from the signed GPU_INFO.
        fwid_match: The leaf FWID equals the report's (true when the report carries none).
    """

    index: int
    item: GpuEvidence
    chain: VerifiedChain
    report: AttestationReport
    arch: str
    fwid_match: bool

    def rim_ids(self) -> tuple[str, str]:
        """The (driver, VBIOS) RIM ids named by the signed report.

        Raises:
            UnsupportedEvidence: the report names an architecture ccai does not know.
        """
        return driver_rim_id(self.report), vbios_rim_id(self.report)

    def with_built_chain(self) -> GpuEvidence:
        """The evidence item with its chain replaced by the built path (leaf first, pinned root last).

        Collateral is gathered for this form: OCSP targets are then the certificates on the path, in
        path order, whatever order (and with or without a root) the device supplied them in.
        """
        pem = b"".join(c.public_bytes(Encoding.PEM) for c in self.chain.certificates)
        return GpuEvidence(
            arch=self.arch, nonce=self.item.nonce, report=self.item.report, certificate_chain=pem
        )


#: Fetches the collateral of authenticated GPUs (a :class:`~ccai.verify.Verifier` with a source);
#: it calls ``steps.begin`` with the step whose data it fetches, so a failure is shown there.
CollateralFetcher = Callable[[Sequence[AuthenticatedGpu], Steps], GpuCollateral]


def _authenticate(
    evidence: Sequence[GpuEvidence],
    *,
    nonce: bytes,
    now: datetime,
    anchors: TrustAnchors,
    allow_simulated: bool,
    caches: VerifierCaches | None,
    steps: Steps,
) -> list[AuthenticatedGpu]:
    # (1) device certificate chains to a pinned root
    steps.begin(STEP_CHAIN)
    chains: list[VerifiedChain] = []
    for gpu, item in enumerate(evidence):
        with _on_gpu(gpu):
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
    hwmodel = common_name(first[1]) if len(first) > 1 else ""
    simulated = any(c.anchors.simulated for c in chains)
    steps.ok(
        STEP_CHAIN,
        f"{len(chains)} GPU(s): {hwmodel} → pinned root" + (" (SIMULATED test PKI)" if simulated else ""),
    )

    # (2) report signatures over the raw bytes, before any parsing
    steps.begin(STEP_SIGNATURE)
    for gpu, (item, chain) in enumerate(zip(evidence, chains, strict=True)):
        with _on_gpu(gpu):
            _signature_step(item.report, chain.certificates[0])
    steps.ok(STEP_SIGNATURE, "ECDSA P-384 / SHA-384 by the attestation key")

    # (3) parse the authenticated reports; FWID of the leaf vs the report; the item's arch label
    steps.begin(STEP_FWID)
    parsed: list[tuple[AttestationReport, bool, str]] = []
    for gpu, (item, chain) in enumerate(zip(evidence, chains, strict=True)):
        with _on_gpu(gpu):
            report, fwid_match = _fwid_step(item.report, chain.certificates[0])
            arch = device_arch(report)
            if arch == "LS10":
                raise UnsupportedEvidence("this is NVSwitch evidence, not GPU evidence", step=STEP_FWID)
            # An empty label (a raw report file carries none) takes the signed architecture.
            if item.arch and item.arch.upper() != arch:
                raise MalformedEvidence(
                    f"the evidence item says arch {item.arch}, the signed report is {arch}",
                    step=STEP_FWID,
                    expected=arch,
                    actual=item.arch,
                )
            parsed.append((report, fwid_match, arch))
    steps.ok(STEP_FWID, "FWID matches the leaf certificate")

    # (4) nonce: the signed request copy carries the verifier's nonce
    steps.begin(STEP_NONCE)
    for gpu, (report, _, _) in enumerate(parsed):
        with _on_gpu(gpu):
            if not hmac.compare_digest(report.nonce, nonce):
                raise NonceMismatch(
                    "the report is not bound to this verifier nonce",
                    step=STEP_NONCE,
                    expected=nonce.hex(),
                    actual=report.nonce.hex(),
                )
    steps.ok(STEP_NONCE, f"eat_nonce {nonce.hex()[:16]}…")
    return [
        AuthenticatedGpu(index=gpu, item=item, chain=chain, report=report, arch=arch, fwid_match=fwid)
        for gpu, (item, chain, (report, fwid, arch)) in enumerate(zip(evidence, chains, parsed, strict=True))
    ]


def _appraise(
    authenticated: Sequence[AuthenticatedGpu],
    collateral: GpuCollateral,
    *,
    nonce: bytes,
    now: datetime,
    caches: VerifierCaches | None,
    cc_mode: str | None,
    steps: Steps,
) -> list[GpuFacts]:
    rim_cache = caches.rims if caches is not None else None
    ocsp_cache = caches.ocsp if caches is not None else None

    # (5) revocation of the device chains
    steps.begin(STEP_REVOCATION)
    device_facts: list[ChainFacts] = []
    for a in authenticated:
        with _on_gpu(a.index):
            roots = [*a.chain.anchors.device_roots, *a.chain.anchors.rim_roots]
            device_facts.append(
                _revocation(
                    a.chain.certificates,
                    collateral,
                    now=now,
                    device=True,
                    roots=roots,
                    expiration=a.chain.expiration,
                    cache=ocsp_cache,
                )
            )
    steps.ok(STEP_REVOCATION, f"device chain OCSP {device_facts[0].ocsp_status}")

    # (6) RIM selection by ids from the signed opaque data
    steps.begin(STEP_RIM_SELECT)
    selected: list[tuple[str, bytes, str, bytes]] = []
    for a in authenticated:
        with _on_gpu(a.index):
            try:
                driver_id, vbios_id = a.rim_ids()
            except Error as exc:
                exc.step = STEP_RIM_SELECT
                raise
            selected.append(
                (
                    driver_id,
                    _rim_for(collateral, driver_id, "driver"),
                    vbios_id,
                    _rim_for(collateral, vbios_id, "VBIOS"),
                )
            )
    steps.ok(STEP_RIM_SELECT, f"{selected[0][0]}, {selected[0][2]}")

    # (7) RIM signing chains, validity, XMLDSig, revocation — trusting only the anchor set the
    # device chain led to (NVIDIA evidence never validates against test RIMs and vice versa)
    steps.begin(STEP_RIM_AUTH)
    rims: list[tuple[CheckedRim, CheckedRim, ChainFacts, ChainFacts]] = []
    for a, (driver_id, driver_xml, vbios_id, vbios_xml) in zip(authenticated, selected, strict=True):
        with _on_gpu(a.index):
            anchors = [a.chain.anchors]
            roots = [*a.chain.anchors.device_roots, *a.chain.anchors.rim_roots]
            driver_rim = check_rim(
                driver_id,
                driver_xml,
                anchors=anchors,
                now=now,
                step=STEP_RIM_AUTH,
                what=f"driver RIM {driver_id}",
                cache=rim_cache,
            )
            vbios_rim = check_rim(
                vbios_id,
                vbios_xml,
                anchors=anchors,
                now=now,
                step=STEP_RIM_AUTH,
                what=f"VBIOS RIM {vbios_id}",
                cache=rim_cache,
            )
            driver_facts = _revocation(
                driver_rim.chain,
                collateral,
                now=now,
                device=False,
                roots=roots,
                expiration=driver_rim.expiration,
                cache=ocsp_cache,
            )
            vbios_facts = _revocation(
                vbios_rim.chain,
                collateral,
                now=now,
                device=False,
                roots=roots,
                expiration=vbios_rim.expiration,
                cache=ocsp_cache,
            )
            rims.append((driver_rim, vbios_rim, driver_facts, vbios_facts))
    steps.ok(
        STEP_RIM_AUTH,
        f"driver RIM OCSP {rims[0][2].ocsp_status}, VBIOS RIM OCSP {rims[0][3].ocsp_status}",
    )

    # (8) RIM version and product match the signed report
    steps.begin(STEP_RIM_MATCH)
    for a, (driver_rim, vbios_rim, _, _) in zip(authenticated, rims, strict=True):
        with _on_gpu(a.index):
            opaque = a.report.opaque_data
            product = _expected_product(a.arch, a.report)
            _rim_match_step(
                driver_rim, expected_version=opaque.driver_version or "", product=product, kind="driver"
            )
            _rim_match_step(
                vbios_rim, expected_version=opaque.vbios_version or "", product=product, kind="VBIOS"
            )
    opaque0 = authenticated[0].report.opaque_data
    steps.ok(
        STEP_RIM_MATCH,
        f"driver {opaque0.driver_version or ''}, VBIOS {(opaque0.vbios_version or '').upper()}",
    )

    # (9) measurements: golden (RIM index i) vs runtime (block i+1)
    steps.begin(STEP_MEASUREMENTS)
    facts: list[GpuFacts] = []
    for a, device, (driver_rim, vbios_rim, driver_facts, vbios_facts), (driver_id, _, vbios_id, _) in zip(
        authenticated, device_facts, rims, selected, strict=True
    ):
        with _on_gpu(a.index):
            comparison = compare_measurements(a.report, driver_rim=driver_rim.rim, vbios_rim=vbios_rim.rim)
        opaque = a.report.opaque_data
        warnings = tuple(
            f"{name} certificate chain is revoked with reason {chain_facts.revocation_reason}"
            for name, chain_facts in (
                ("device", device),
                ("driver RIM", driver_facts),
                ("VBIOS RIM", vbios_facts),
            )
            if chain_facts.ocsp_status == "revoked"
        )
        certs = a.chain.certificates
        facts.append(
            GpuFacts(
                index=a.index,
                arch=a.arch,
                nonce=nonce,
                driver_version=opaque.driver_version or "",
                vbios_version=(opaque.vbios_version or "").upper(),
                hwmodel=common_name(certs[1]) if len(certs) > 1 else "",
                ueid=str(certs[0].serial_number),
                oemid=driver_rim.rim.firmware_manufacturer_id,
                fwid_match=a.fwid_match,
                device_chain=device,
                driver_rim_chain=driver_facts,
                vbios_rim_chain=vbios_facts,
                driver_rim_id=driver_id,
                vbios_rim_id=vbios_id,
                comparison=comparison,
                simulated=a.chain.anchors.simulated,
                cc_mode=cc_mode,
                chip_info=opaque.chip_info,
                feature_flag=opaque.feature_flag,
                nvdec0_status=opaque.nvdec0_status,
                ppcie_status=opaque.protected_pcie_status,
                switch_pdis=opaque.switch_pdis or (),
                warnings=warnings,
            )
        )
    first = facts[0].comparison
    mismatches = [r.index for r in first.mismatches]
    steps.ok(
        STEP_MEASUREMENTS,
        f"{len(first.compared)} compared, measres {'success' if first.success else 'fail'}"
        + (f", mismatches at {mismatches}" if mismatches else ""),
    )
    return facts


def _check_arguments(
    evidence: Sequence[GpuEvidence],
    *,
    nonce: bytes,
    now: datetime,
    anchors: TrustAnchors,
    allow_simulated: bool,
    claims_version: str,
    reported_cc_mode: str | None,
) -> None:
    if len(nonce) != _NONCE_SIZE:
        raise UsageError("the verifier nonce must be 32 bytes", expected=_NONCE_SIZE, actual=len(nonce))
    if claims_version not in CLAIMS_VERSIONS:
        raise UsageError(f"unknown claims version {claims_version!r}", expected=list(CLAIMS_VERSIONS))
    if allow_simulated and (not anchors.simulated or anchors.gpu is None):
        raise UsageError(
            "allow_simulated=True needs the virtual GPU's test-PKI anchors",
            hint="anchors=TrustAnchors.simulated_test_pki(gpu_device_root=…, gpu_rim_root=…)",
        )
    if reported_cc_mode is not None and reported_cc_mode not in _CC_MODES:
        raise UsageError(f"unknown CC mode {reported_cc_mode!r}", expected=list(_CC_MODES))
    if not evidence:
        raise UsageError("no GPU evidence to verify")
    if now.tzinfo is None:
        raise UsageError("now must be timezone-aware")


def run_gpu_checklist(
    evidence: Sequence[GpuEvidence],
    *,
    nonce: bytes,
    now: datetime,
    collateral: GpuCollateral | CollateralFetcher,
    policy: Policy | None,
    anchors: TrustAnchors,
    allow_simulated: bool,
    claims_version: str,
    reported_cc_mode: str | None,
    caches: VerifierCaches | None,
) -> VerifiedEvidence:
    """Run the whole GPU checklist (for :func:`verify_gpu_evidence` and the Verifier).

    ``collateral`` is either the collateral itself or a fetcher called after steps 1–4 with the
    authenticated GPUs. Any :class:`~ccai.errors.Error` raised carries the per-step results.
    """
    _check_arguments(
        evidence,
        nonce=nonce,
        now=now,
        anchors=anchors,
        allow_simulated=allow_simulated,
        claims_version=claims_version,
        reported_cc_mode=reported_cc_mode,
    )
    policy = default_policy() if policy is None else policy
    steps = Steps(GPU_STEPS)
    try:
        authenticated = _authenticate(
            evidence,
            nonce=nonce,
            now=now,
            anchors=anchors,
            allow_simulated=allow_simulated,
            caches=caches,
            steps=steps,
        )
        gathered = collateral if isinstance(collateral, GpuCollateral) else collateral(authenticated, steps)
        facts = _appraise(
            authenticated,
            gathered,
            nonce=nonce,
            now=now,
            caches=caches,
            cc_mode=reported_cc_mode,
            steps=steps,
        )

        # (10) multi-GPU mode: mixing single-GPU and multi-GPU passthrough is not allowed
        steps.begin(STEP_MODES)
        spt = [f.index for f in facts if (f.feature_flag or _SPT) == _SPT]
        if spt and len(spt) != len(facts):
            other = next(f for f in facts if f.index not in spt)
            raise PolicyViolation(
                "the GPUs mix single-GPU passthrough with multi-GPU/protected-PCIe mode",
                step=STEP_MODES,
                index=f"GPU-{other.index}",
                expected="the same passthrough mode on every GPU",
                actual=f"SPT on GPU {spt}, FEATURE_FLAG {other.feature_flag} on GPU-{other.index}",
            )
        flag = facts[0].feature_flag
        steps.ok(STEP_MODES, "single GPU" if flag is None else _FEATURE_NAMES.get(flag, str(flag)))

        # (11) claims
        steps.begin(STEP_CLAIMS)
        per_gpu = tuple(gpu_claims(f, version=claims_version) for f in facts)
        simulated = any(f.simulated for f in facts)
        overall = overall_claims(nonce=nonce, version=claims_version, gpus=per_gpu, simulated=simulated)
        steps.ok(STEP_CLAIMS, f"claims {claims_version}")

        # (12) policy appraisal (composite verification defers it to its own step over all claims)
        steps.begin(STEP_POLICY)
        if policy is DEFER_APPRAISAL:
            steps.skip(STEP_POLICY, "deferred to the composite appraisal")
        else:
            appraise(policy, Appraisal(overall=overall, gpus=per_gpu, allow_simulated=allow_simulated))
            steps.ok(STEP_POLICY, "satisfied")
    except Error as exc:
        steps.attach(exc)
        raise

    return _issue(
        nonce=bytes(nonce),
        gpus=tuple(VerifiedGpu(index=i, claims=c) for i, c in enumerate(per_gpu)),
        overall_claims=overall,
        verified_at=now,
        simulated=simulated,
        claims_version=claims_version,
        steps=steps.results(),
    )


def verify_gpu_evidence(
    evidence: Sequence[GpuEvidence],
    *,
    nonce: bytes,
    collateral: GpuCollateral,
    now: datetime,
    policy: Policy | None = None,
    anchors: TrustAnchors | None = None,
    allow_simulated: bool = False,
    claims_version: str = "3.0",
    reported_cc_mode: str | None = None,
) -> VerifiedEvidence:
    """Verify NVIDIA GPU evidence and appraise it (the checklist in the module docstring).

    This is the one-shot recipe for collateral the caller already has; a
    :class:`~ccai.verify.Verifier` also fetches collateral (after authenticating the evidence)
    and keeps verified chains and RIMs in its caches.

    Args:
        evidence: One item per GPU, in NVIDIA's evidence-JSON shape. An item whose ``arch`` is
            empty takes the architecture of its signed report (raw report files carry no label).
        nonce: The verifier's 32-byte nonce.
        collateral: RIMs and OCSP responses (see :func:`ccai.collateral.gather_gpu_collateral`).
        now: The verification time, captured once by the caller.
        policy: The appraisal policy; default :func:`ccai.verify.default_policy`.
        anchors: The roots to trust; default :meth:`TrustAnchors.vendor`. Test-PKI anchors
            (:meth:`TrustAnchors.simulated_test_pki`) are trusted next to the NVIDIA roots, and
            only with ``allow_simulated``; without it, evidence chaining to them is rejected.
        allow_simulated: Accept evidence from ccai's virtual GPU (its claims carry
            ``x-ccai-simulated: true``; the appraisal is told so by name, see
            :class:`ccai.verify.NotSimulated`). Never set this in production.
        claims_version: ``"3.0"`` (default) or ``"2.0"``.
        reported_cc_mode: The CC mode the platform reports (``on``/``devtools``/``off``) when the
            caller read it from the local driver; it is not signed, and is used by the
            CC-mode/DevTools policy rules (``x-ccai-cc-mode``).

    Returns:
        The verified evidence with per-GPU and overall claims and the per-step results.

    Raises:
        UsageError: bad arguments (nonce size, claims version, simulation without test anchors).
        EvidenceError: malformed or unsupported evidence.
        VerificationError: the first failed step (``ChainError``, ``CertificateExpired``,
            ``SignatureError``, ``FwidMismatch``, ``NonceMismatch``, ``RimMismatch``,
            ``MeasurementMismatch``, ``CertificateRevoked``, ``SimulatedEvidenceRejected``,
            ``PolicyViolation`` …); its message names the GPU and the step, and its ``steps``
            the per-step results.
        CollateralError: a RIM or OCSP response needed for a check is missing or unusable.
    """
    return run_gpu_checklist(
        evidence,
        nonce=nonce,
        now=now,
        collateral=collateral,
        policy=policy,
        anchors=anchors if anchors is not None else TrustAnchors.vendor(),
        allow_simulated=allow_simulated,
        claims_version=claims_version,
        reported_cc_mode=reported_cc_mode,
        caches=None,
    )
