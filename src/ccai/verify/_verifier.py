"""The library verifier: trust anchors, policy, a collateral source and caches in one object.

A :class:`Verifier` is what the CLI, the services and clients build once and call many times::

    verifier = Verifier.production()                        # pinned roots, NVIDIA/Intel/AMD online
    verifier = Verifier.offline(bundle=b, at=pinned_time)   # a collateral bundle, no network
    verifier = Verifier.simulated(test_pki, rim_service_url=dev_server)   # virtual hardware, by name

    verified = verifier.verify_gpu(items, nonce=nonce)      # VerifiedEvidence, .steps, .gpus[i].claims

Every method runs one numbered checklist (``GPU_STEPS``, ``TDX_STEPS``, ``SNP_STEPS``,
``COMPOSITE_STEPS``) and returns the verified result with its per-step results, or raises the
specific :class:`~ccai.errors.Error` of the first failed step, whose ``steps`` attribute holds the
results of the steps that ran.

GPU evidence is authenticated before anything else is looked at: (1) chain → (2) signature over
the raw bytes → (3) parse → (4) nonce. Only then is collateral fetched, for the RIM ids of the
*signed* reports and the OCSP targets of the *built* chains. So a forged or unbound report fails
at its own step even offline, and :class:`~ccai.errors.CollateralUnavailable` is raised only for
evidence that looked genuine so far.

The verifier holds no global state: its caches (:class:`~ccai.verify._caches.VerifierCaches`) are
its own, its sources are the ones it was built with, and the verification time is captured once
per call (or pinned with ``at``). Collateral I/O happens only through the
:class:`~ccai.collateral.CollateralSource` and the Intel PCS / AMD KDS clients it was given.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from datetime import datetime

from cryptography import x509

from ccai._time import utcnow
from ccai.collateral import (
    AMD_KDS_URL,
    DEFAULT_OCSP_URL,
    DEFAULT_RIM_SERVICE_URL,
    INTEL_PCS_URL,
    AmdKdsClient,
    CollateralBundle,
    CollateralCache,
    CollateralSource,
    GpuCollateral,
    IntelPcsClient,
    SnpCollateral,
    SourceChain,
    TdxCollateral,
    default_gpu_source,
    gather_gpu_collateral,
    load_embedded_collateral,
)
from ccai.errors import CollateralUnavailable, Error, UsageError
from ccai.evidence import (
    BINDING_V1,
    EvidenceBundle,
    GpuEvidence,
    SnpProduct,
    SnpReport,
    TdxEvent,
    TdxQuote,
    derive_gpu_nonce,
    parse_rim,
    parse_snp_report,
    parse_tdx_quote,
)
from ccai.verify._caches import DEFAULT_CACHE_SIZE, VerifierCaches
from ccai.verify._composite import check_freshness_arguments, ppcie_stage_for, run_composite
from ccai.verify._cpu_policy import default_composite_policy, snp_rules, tdx_rules
from ccai.verify._gpu import (
    GPU_STEPS,
    STEP_REVOCATION,
    STEP_RIM_SELECT,
    AuthenticatedGpu,
    CollateralFetcher,
    _authenticate,
    _check_arguments,
    run_gpu_checklist,
)
from ccai.verify._policy import DEFER_APPRAISAL, Policy, default_policy
from ccai.verify._ppcie import run_ppcie_checklist
from ccai.verify._ppcie_policy import SwitchesVerified, default_ppcie_policy, default_switch_policy
from ccai.verify._result import VerifiedEvidence
from ccai.verify._snp import SNP_STEPS, SnpVerified, verify_snp_report
from ccai.verify._steps import Steps, results_from_trace
from ccai.verify._switch import (
    SWITCH_STEPS,
    AuthenticatedSwitch,
    SwitchCollateralFetcher,
    authenticate_switches,
    run_switch_checklist,
)
from ccai.verify._switch import _check_arguments as _check_switch_arguments
from ccai.verify._tdx import TDX_STEPS, TdxVerified, verify_tdx_quote
from ccai.verify._trust import TrustAnchors

__all__ = ["Verifier"]

_DRIVER_PREFIXES = ("NV_GPU_DRIVER_", "NV_GPU_CC_DRIVER_")
# The firmware RIM: a GPU's VBIOS RIM, or an NVSwitch's BIOS RIM.
_VBIOS_PREFIX = ("NV_GPU_VBIOS_", "NV_SWITCH_BIOS_")


class _RimFiles:
    """A driver and/or VBIOS RIM the caller holds, served under whatever id the signed report names.

    Nothing is parsed to choose them: step (8) still checks each RIM's version and product
    against the report, so a RIM of another driver or GPU is refused there.
    """

    def __init__(self, driver: bytes | None, vbios: bytes | None) -> None:
        self.driver = driver
        self.vbios = vbios

    def __repr__(self) -> str:
        return "RIM files given by the caller"

    def rim(self, rim_id: str) -> bytes:
        if rim_id.startswith(_DRIVER_PREFIXES) and self.driver is not None:
            return self.driver
        if rim_id.startswith(_VBIOS_PREFIX) and self.vbios is not None:
            return self.vbios
        raise CollateralUnavailable(f"no RIM {rim_id} given by the caller")

    def ocsp(self, cert: x509.Certificate, issuer: x509.Certificate, *, nonce: bytes | None) -> bytes:
        del cert, issuer, nonce
        raise CollateralUnavailable("RIM files carry no OCSP responses")


class _Prefetched:
    """RIMs already fetched, in front of the source they came from (for the OCSP round)."""

    def __init__(self, rims: dict[str, bytes], source: CollateralSource) -> None:
        self.rims = rims
        self.source = source

    def rim(self, rim_id: str) -> bytes:
        xml = self.rims.get(rim_id)
        return xml if xml is not None else self.source.rim(rim_id)

    def ocsp(self, cert: x509.Certificate, issuer: x509.Certificate, *, nonce: bytes | None) -> bytes:
        return self.source.ocsp(cert, issuer, nonce=nonce)


#: A fetcher for either kind of authenticated NVIDIA device (GPU or NVSwitch).
_AnyFetcher = Callable[[Sequence[AuthenticatedGpu] | Sequence[AuthenticatedSwitch], Steps], GpuCollateral]


def _chain(*sources: CollateralSource | None) -> CollateralSource | None:
    present = [s for s in sources if s is not None]
    if not present:
        return None
    return present[0] if len(present) == 1 else SourceChain(present)


def _switch_fetcher(fetch: _AnyFetcher | GpuCollateral) -> SwitchCollateralFetcher | GpuCollateral:
    return fetch


def _gpu_fetcher(fetch: _AnyFetcher | GpuCollateral) -> CollateralFetcher | GpuCollateral:
    return fetch


class Verifier:
    """Verifies GPU evidence, TDX quotes, SNP reports and composite bundles.

    Build it with :meth:`production`, :meth:`offline` or :meth:`simulated`; the constructor takes
    the same pieces explicitly.

    Args:
        anchors: The roots to trust (default :meth:`TrustAnchors.vendor`). Test-PKI anchors are
            trusted next to the vendor roots, and only with ``allow_simulated``.
        policy: The appraisal policy (one claims-based model, :mod:`ccai.verify` policies or
            :func:`~ccai.verify.load_policy`), used for every kind of evidence this verifier
            checks; default per kind: :func:`~ccai.verify.default_policy` for GPU evidence
            (accepting unchecked revocation only when ``check_revocation`` is False),
            :func:`~ccai.verify.tdx_rules` / :func:`~ccai.verify.snp_rules` for CPU evidence,
            :func:`~ccai.verify.default_composite_policy` for bundles.
        allow_simulated: Accept evidence of ccai's virtual hardware (needs test-PKI ``anchors``).
        gpu_source: Where GPU collateral (RIMs, OCSP responses) is fetched from, after the
            evidence is authenticated; ``None``: only collateral passed to a call is used.
        check_revocation: Fetch OCSP responses (False: revocation is reported ``not-checked``).
        driver_rim: A driver RIM to serve under the id the signed report names (asked first).
        vbios_rim: A VBIOS RIM to serve the same way.
        pcs: Intel PCS / PCCS client for TDX collateral a call does not bring.
        kds: AMD KDS client for SNP collateral a call does not bring.
        at: A pinned verification time (offline checks of old evidence); default: now, per call.
        cache_size: Entries per cache (verified device chains, authenticated RIMs).

    Attributes:
        anchors, policy, allow_simulated, gpu_source, check_revocation, pcs, kds, at: As given
        (``anchors`` resolved).
        caches: This verifier's caches; ``caches.clear()`` makes the next call cold.

    Raises:
        UsageError: ``allow_simulated`` without test-PKI anchors, or a naive ``at``.
    """

    def __init__(
        self,
        *,
        anchors: TrustAnchors | None = None,
        policy: Policy | None = None,
        allow_simulated: bool = False,
        gpu_source: CollateralSource | None = None,
        check_revocation: bool = True,
        driver_rim: bytes | None = None,
        vbios_rim: bytes | None = None,
        pcs: IntelPcsClient | None = None,
        kds: AmdKdsClient | None = None,
        at: datetime | None = None,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        self.anchors = anchors if anchors is not None else TrustAnchors.vendor()
        if allow_simulated and not self.anchors.simulated:
            raise UsageError(
                "allow_simulated needs the virtual hardware's test-PKI anchors",
                hint="Verifier.simulated(TrustAnchors.simulated_test_pki(...))",
            )
        if at is not None and at.tzinfo is None:
            raise UsageError("at must be timezone-aware")
        files = _RimFiles(driver_rim, vbios_rim) if driver_rim is not None or vbios_rim is not None else None
        self.policy = policy
        self.allow_simulated = allow_simulated
        self.gpu_source = _chain(files, gpu_source)
        self.check_revocation = check_revocation
        self.pcs = pcs
        self.kds = kds
        self.at = at
        self.caches = VerifierCaches(cache_size)

    def __repr__(self) -> str:
        return (
            f"Verifier(anchors={self.anchors.name!r}, simulated={self.allow_simulated}, "
            f"gpu_source={self.gpu_source!r}, check_revocation={self.check_revocation})"
        )

    # -- constructors for the three situations ---------------------------------------------------

    @classmethod
    def production(
        cls,
        *,
        policy: Policy | None = None,
        rim_service_url: str = DEFAULT_RIM_SERVICE_URL,
        ocsp_url: str = DEFAULT_OCSP_URL,
        pcs_url: str = INTEL_PCS_URL,
        kds_url: str = AMD_KDS_URL,
        service_key: str | None = None,
        cache: CollateralCache | None = None,
        bundle: CollateralBundle | None = None,
        rim_dir: str | os.PathLike[str] | None = None,
    ) -> Verifier:
        """The pinned vendor roots and online collateral: NVIDIA's RIM service and OCSP responder,
        Intel PCS, AMD KDS (a collateral cache, bundle or RIM directory is asked first).

        Args:
            policy: GPU appraisal policy (default: :func:`~ccai.verify.default_policy`, which
                requires revocation to be checked and good).
            rim_service_url, ocsp_url, pcs_url, kds_url: Service URLs (default the vendors').
            service_key: NVIDIA service key for the RIM service and the OCSP responder.
            cache: A collateral cache to read first and fill from the network.
            bundle: An offline collateral bundle to consult before the network.
            rim_dir: A directory of ``<id>.xml`` RIMs to consult before the network.

        Returns:
            The verifier.
        """
        return cls(
            policy=policy,
            gpu_source=default_gpu_source(
                bundle=bundle,
                rim_dir=rim_dir,
                offline=False,
                rim_service_url=rim_service_url,
                ocsp_url=ocsp_url,
                service_key=service_key,
                cache=cache,
            ),
            check_revocation=True,
            pcs=IntelPcsClient(pcs_url),
            kds=AmdKdsClient(kds_url),
        )

    @classmethod
    def offline(
        cls,
        *,
        policy: Policy | None = None,
        bundle: CollateralBundle | None = None,
        rim_dir: str | os.PathLike[str] | None = None,
        driver_rim: bytes | None = None,
        vbios_rim: bytes | None = None,
        at: datetime | None = None,
    ) -> Verifier:
        """The pinned vendor roots and local collateral only; never touches the network.

        Revocation is checked from the bundle's OCSP responses; without a bundle it is reported
        ``not-checked``, which the default policy of such a verifier then accepts (pass a
        ``policy`` to demand it).

        Args:
            policy: GPU appraisal policy.
            bundle: An offline collateral bundle.
            rim_dir: A directory of ``<id>.xml`` RIMs.
            driver_rim: A driver RIM served under the id the signed report names.
            vbios_rim: A VBIOS RIM served the same way.
            at: A pinned verification time (real vectors carry certificates that expire).

        Returns:
            The verifier.
        """
        return cls(
            policy=policy,
            gpu_source=default_gpu_source(bundle=bundle, rim_dir=rim_dir, offline=True),
            check_revocation=bundle is not None,
            driver_rim=driver_rim,
            vbios_rim=vbios_rim,
            at=at,
        )

    @classmethod
    def simulated(
        cls,
        test_pki: TrustAnchors,
        *,
        policy: Policy | None = None,
        gpu_source: CollateralSource | None = None,
        bundle: CollateralBundle | None = None,
        rim_service_url: str | None = None,
        ocsp_url: str | None = None,
        pcs_url: str | None = None,
        kds_url: str | None = None,
        at: datetime | None = None,
    ) -> Verifier:
        """A verifier that also accepts ccai's virtual hardware — only when asked for by name.

        The test PKI is trusted next to the pinned vendor roots; results from it carry
        ``x-ccai-simulated: true``. Collateral comes from ``bundle``, then the given URLs (ccai's
        dev collateral server), then ``gpu_source`` (for example the virtual GPU's own RIMs);
        never from NVIDIA's services, which know nothing about the test PKI.

        Args:
            test_pki: :meth:`TrustAnchors.simulated_test_pki` anchors.
            policy: GPU appraisal policy.
            gpu_source: A last GPU collateral source.
            bundle: A collateral bundle.
            rim_service_url: RIM service of a dev collateral server.
            ocsp_url: OCSP responder of a dev collateral server (revocation is checked when it or a
                bundle is given).
            pcs_url: Intel-PCS-like base URL of a dev collateral server.
            kds_url: AMD-KDS-like base URL of a dev collateral server.
            at: A pinned verification time.

        Returns:
            The verifier.

        Raises:
            UsageError: ``test_pki`` is not marked simulated.
        """
        if not test_pki.simulated:
            raise UsageError("Verifier.simulated needs test-PKI anchors (TrustAnchors.simulated_test_pki)")
        network = None
        if rim_service_url is not None or ocsp_url is not None:
            network = default_gpu_source(
                rim_service_url=rim_service_url or DEFAULT_RIM_SERVICE_URL,
                ocsp_url=ocsp_url or DEFAULT_OCSP_URL,
            )
        local = default_gpu_source(bundle=bundle, offline=True) if bundle is not None else None
        return cls(
            anchors=test_pki,
            policy=policy,
            allow_simulated=True,
            gpu_source=_chain(local, network, gpu_source),
            check_revocation=bundle is not None or ocsp_url is not None,
            pcs=IntelPcsClient(pcs_url) if pcs_url is not None else None,
            kds=AmdKdsClient(kds_url) if kds_url is not None else None,
            at=at,
        )

    def close(self) -> None:
        """Close the HTTP clients this verifier created (Intel PCS, AMD KDS)."""
        for client in (self.pcs, self.kds):
            if client is not None:
                client.close()

    # -- helpers ----------------------------------------------------------------------------------

    def _now(self, now: datetime | None) -> datetime:
        """The verification time of one call: given, pinned, or now — captured once."""
        return now if now is not None else (self.at if self.at is not None else utcnow())

    def _gpu_policy(self) -> Policy:
        if self.policy is not None:
            return self.policy
        return default_policy(allow_unchecked_revocation=not self.check_revocation)

    def _composite_policy(self, *, ppcie: bool = False) -> Policy:
        if self.policy is not None:
            return self.policy
        return default_composite_policy(
            gpu=self._gpu_policy(),
            ppcie=ppcie,
            switch=SwitchesVerified(allow_not_checked=not self.check_revocation),
        )

    def _fetcher(self, now: datetime) -> _AnyFetcher | GpuCollateral:
        source = self.gpu_source
        if source is None:
            # Nothing to fetch from: steps 1-5 still run, and step 6 says which RIM is missing.
            return GpuCollateral(rims={}, ocsp={}, ocsp_checked=False)
        check_revocation = self.check_revocation

        def fetch(
            authenticated: Sequence[AuthenticatedGpu] | Sequence[AuthenticatedSwitch], steps: Steps
        ) -> GpuCollateral:
            # Collateral for what the signed reports name and the built paths hold, never for
            # unauthenticated bytes; the RIMs first (step 6), then OCSP for every chain (step 5).
            items = [a.with_built_chain() for a in authenticated]
            steps.begin(STEP_RIM_SELECT)
            rims = dict(gather_gpu_collateral(items, source, now=now, check_revocation=False).rims)
            if not check_revocation:
                return GpuCollateral(rims=rims, ocsp={}, ocsp_checked=False)
            steps.begin(STEP_REVOCATION)
            return gather_gpu_collateral(
                items,
                _Prefetched(rims, source),
                now=now,
                check_revocation=True,
                rim_certificates=self._rim_certificates,
            )

        return fetch

    def _rim_certificates(self, xml: bytes) -> tuple[x509.Certificate, ...]:
        """The certificates ``xml`` embeds, remembered by the RIM's SHA-256 (parsing is pure)."""
        digest = hashlib.sha256(xml).digest()
        found = self.caches.rim_certificates.get(digest)
        if found is None:
            found = tuple(parse_rim(xml).certificates)
            self.caches.rim_certificates.put(digest, found)
        return found

    # -- GPU ----------------------------------------------------------------------------------------

    def authenticate_gpu(
        self, evidence: Sequence[GpuEvidence], *, nonce: bytes, now: datetime | None = None
    ) -> tuple[AuthenticatedGpu, ...]:
        """Run the evidence-only GPU steps (1)–(4): chain, signature, contents and FWID, nonce.

        No collateral is needed; this is not a verification (no revocation, RIMs, measurements or
        policy) — :meth:`verify_gpu` is.

        Args:
            evidence: One item per GPU.
            nonce: The verifier's 32-byte nonce.
            now: The verification time (default: pinned ``at``, else now).

        Returns:
            Each GPU's built chain and parsed, authenticated report.

        Raises:
            UsageError: bad arguments.
            EvidenceError, VerificationError: the first failed step, with ``steps``.
        """
        when = self._now(now)
        _check_arguments(
            evidence,
            nonce=nonce,
            now=when,
            anchors=self.anchors,
            allow_simulated=self.allow_simulated,
            claims_version="3.0",
            reported_cc_mode=None,
        )
        steps = Steps(GPU_STEPS[:4])
        try:
            return tuple(
                _authenticate(
                    evidence,
                    nonce=nonce,
                    now=when,
                    anchors=self.anchors,
                    allow_simulated=self.allow_simulated,
                    caches=self.caches,
                    steps=steps,
                )
            )
        except Error as exc:
            steps.attach(exc)
            raise

    def verify_gpu(
        self,
        evidence: Sequence[GpuEvidence],
        *,
        nonce: bytes,
        now: datetime | None = None,
        collateral: GpuCollateral | None = None,
        claims_version: str = "3.0",
        reported_cc_mode: str | None = None,
    ) -> VerifiedEvidence:
        """Verify NVIDIA GPU evidence (``GPU_STEPS``), fetching collateral after authenticating it.

        Args:
            evidence: One item per GPU, in NVIDIA's evidence-JSON shape (an empty ``arch`` takes
                the signed report's).
            nonce: The verifier's 32-byte nonce.
            now: The verification time (default: pinned ``at``, else now).
            collateral: Collateral to use instead of fetching it.
            claims_version: ``"3.0"`` or ``"2.0"``.
            reported_cc_mode: The CC mode the local driver reports (unsigned; for the policy).

        Returns:
            The verified evidence: claims, and ``steps`` with every step's result.

        Raises:
            UsageError: bad arguments.
            EvidenceError, VerificationError: the first failed step; ``steps`` on the error.
            CollateralError: collateral for genuine-looking evidence is unavailable (steps 1–4
                passed; ``steps`` on the error).
        """
        when = self._now(now)
        return run_gpu_checklist(
            evidence,
            nonce=nonce,
            now=when,
            collateral=collateral if collateral is not None else _gpu_fetcher(self._fetcher(when)),
            policy=self._gpu_policy(),
            anchors=self.anchors,
            allow_simulated=self.allow_simulated,
            claims_version=claims_version,
            reported_cc_mode=reported_cc_mode,
            caches=self.caches,
        )

    # -- NVSwitch and protected PCIe ------------------------------------------------------------

    def _switch_policy(self) -> Policy:
        if self.policy is not None:
            return self.policy
        return default_switch_policy(allow_unchecked_revocation=not self.check_revocation)

    def authenticate_switch(
        self, evidence: Sequence[GpuEvidence], *, nonce: bytes, now: datetime | None = None
    ) -> tuple[AuthenticatedSwitch, ...]:
        """Run the evidence-only switch steps (1)–(4): chain, signature, contents, nonce.

        Args:
            evidence: One item per NVSwitch.
            nonce: The verifier's 32-byte nonce.
            now: The verification time (default: pinned ``at``, else now).

        Returns:
            Each switch's built chain and parsed, authenticated report.

        Raises:
            UsageError: bad arguments.
            EvidenceError, VerificationError: the first failed step, with ``steps``.
        """
        when = self._now(now)
        _check_switch_arguments(
            evidence,
            nonce=nonce,
            now=when,
            anchors=self.anchors,
            allow_simulated=self.allow_simulated,
            claims_version="3.0",
        )
        steps = Steps(SWITCH_STEPS[:4])
        try:
            return tuple(
                authenticate_switches(
                    evidence,
                    nonce=nonce,
                    now=when,
                    anchors=self.anchors,
                    allow_simulated=self.allow_simulated,
                    caches=self.caches,
                    steps=steps,
                )
            )
        except Error as exc:
            steps.attach(exc)
            raise

    def verify_switch(
        self,
        evidence: Sequence[GpuEvidence],
        *,
        nonce: bytes,
        now: datetime | None = None,
        collateral: GpuCollateral | None = None,
        claims_version: str = "3.0",
    ) -> VerifiedEvidence:
        """Verify NVIDIA NVSwitch (LS10) evidence (``SWITCH_STEPS``), fetching the BIOS RIM and OCSP
        responses after authenticating it.

        Args:
            evidence: One item per switch (NVIDIA's evidence-JSON shape, ``arch`` ``LS10`` or empty).
            nonce: The verifier's 32-byte nonce.
            now: The verification time (default: pinned ``at``, else now).
            collateral: Collateral to use instead of fetching it.
            claims_version: ``"3.0"`` (NRAS v4 names) or ``"2.0"`` (v3).

        Returns:
            The verified evidence; ``switches`` holds the per-switch claims (``gpus`` is empty).

        Raises:
            UsageError: bad arguments.
            EvidenceError, VerificationError: the first failed step; ``steps`` on the error.
            CollateralError: collateral for genuine-looking evidence is unavailable.
        """
        when = self._now(now)
        return run_switch_checklist(
            evidence,
            nonce=nonce,
            now=when,
            collateral=collateral if collateral is not None else _switch_fetcher(self._fetcher(when)),
            policy=self._switch_policy(),
            anchors=self.anchors,
            allow_simulated=self.allow_simulated,
            claims_version=claims_version,
            caches=self.caches,
        )

    def verify_ppcie(
        self,
        gpus: Sequence[GpuEvidence],
        switches: Sequence[GpuEvidence],
        *,
        nonce: bytes,
        switch_nonce: bytes | None = None,
        now: datetime | None = None,
        expected_gpus: int = 8,
        expected_switches: int = 4,
        gpu_collateral: GpuCollateral | None = None,
        switch_collateral: GpuCollateral | None = None,
    ) -> VerifiedEvidence:
        """Verify a protected-PCIe system — every GPU and NVSwitch, and their topology — as one.

        Runs ``PPCIE_STEPS`` (:mod:`ccai.verify._ppcie`): the GPU checklist, the switch checklist,
        PPCIe mode on every GPU, the GPU↔switch topology and counts, claims, then this verifier's
        policy (default :func:`~ccai.verify.default_ppcie_policy`). The result is all or nothing:
        a returned value means every GPU may be set ready; any failure raises and none may.

        Args:
            gpus: One evidence item per GPU.
            switches: One evidence item per NVSwitch.
            nonce: The 32-byte nonce the GPU reports carry.
            switch_nonce: The nonce the switch reports carry (default ``nonce``).
            now: The verification time (default: pinned ``at``, else now).
            expected_gpus: GPUs the system must have (HGX: 8).
            expected_switches: NVSwitches the system must have (HGX H100/H200: 4).
            gpu_collateral: GPU collateral to use instead of fetching it.
            switch_collateral: Switch collateral to use instead of fetching it.

        Returns:
            One result: per-GPU claims (with ``x-nvidia-gpu-switch-pdis``), per-switch claims and
            overall claims (``x-ccai-ppcie``), with every step's result.

        Raises:
            UsageError: bad arguments.
            EvidenceError, VerificationError, CollateralError: the first failure, naming the
                device and the step; ``steps`` on the error.
        """
        when = self._now(now)
        fetch = self._fetcher(when)
        return run_ppcie_checklist(
            gpus,
            switches,
            nonce=nonce,
            switch_nonce=switch_nonce if switch_nonce is not None else nonce,
            now=when,
            gpu_collateral=gpu_collateral if gpu_collateral is not None else _gpu_fetcher(fetch),
            switch_collateral=switch_collateral if switch_collateral is not None else _switch_fetcher(fetch),
            policy=self.policy
            if self.policy is not None
            else default_ppcie_policy(
                gpus=expected_gpus,
                switches=expected_switches,
                allow_unchecked_revocation=not self.check_revocation,
            ),
            expected_gpus=expected_gpus,
            expected_switches=expected_switches,
            anchors=self.anchors,
            allow_simulated=self.allow_simulated,
            caches=self.caches,
        )

    # -- CPU TEEs -----------------------------------------------------------------------------------

    def verify_tdx(
        self,
        quote: TdxQuote | bytes,
        *,
        now: datetime | None = None,
        collateral: TdxCollateral | None = None,
        event_log: Sequence[TdxEvent] | None = None,
    ) -> TdxVerified:
        """Verify an Intel TDX quote (``TDX_STEPS``) with this verifier's anchors and TDX policy.

        Args:
            quote: The quote, raw or parsed.
            now: The verification time (default: pinned ``at``, else now).
            collateral: Intel collateral; default: fetched from the PCS client, if any.
            event_log: Measured events to replay against RTMR0..3.

        Returns:
            The verified quote; ``step_results`` gives the per-step results.

        Raises:
            Error: as :func:`~ccai.verify.verify_tdx_quote`, with ``steps`` on the error.
        """
        when = self._now(now)
        trace: list[tuple[str, str]] = []
        try:
            if collateral is None and self.pcs is not None:
                parsed = quote if isinstance(quote, TdxQuote) else parse_tdx_quote(quote)
                collateral = self._fetch_tdx(parsed)
                quote = parsed
            return verify_tdx_quote(
                quote,
                collateral,
                now=when,
                policy=self.policy if self.policy is not None else tdx_rules(),
                event_log=event_log,
                trace=trace,
                anchors=self.anchors,
                allow_simulated=self.allow_simulated,
            )
        except Error as exc:
            exc.steps = results_from_trace(TDX_STEPS, trace, exc)
            raise

    def verify_snp(
        self,
        report: SnpReport | bytes,
        *,
        now: datetime | None = None,
        collateral: SnpCollateral | None = None,
    ) -> SnpVerified:
        """Verify an AMD SEV-SNP report (``SNP_STEPS``) with this verifier's anchors and SNP policy.

        Args:
            report: The report, raw or parsed.
            now: The verification time (default: pinned ``at``, else now).
            collateral: VCEK/VLEK (and ASK, ARK, CRL); default: fetched from the KDS client, if any.

        Returns:
            The verified report; ``step_results`` gives the per-step results.

        Raises:
            Error: as :func:`~ccai.verify.verify_snp_report`, with ``steps`` on the error.
        """
        when = self._now(now)
        trace: list[tuple[str, str]] = []
        try:
            if collateral is None and self.kds is not None:
                parsed = report if isinstance(report, SnpReport) else parse_snp_report(report)
                collateral = self._fetch_snp(parsed)
                report = parsed
            return verify_snp_report(
                report,
                collateral if collateral is not None else SnpCollateral(),
                now=when,
                policy=self.policy if self.policy is not None else snp_rules(),
                trace=trace,
                anchors=self.anchors,
                allow_simulated=self.allow_simulated,
            )
        except Error as exc:
            exc.steps = results_from_trace(SNP_STEPS, trace, exc)
            raise

    def _fetch_bundle_cpu(self, bundle: EvidenceBundle) -> TdxCollateral | SnpCollateral | None:
        cpu = bundle.cpu
        if cpu is None:
            return None
        if cpu.type == "tdx" and self.pcs is not None:
            return self._fetch_tdx(parse_tdx_quote(cpu.evidence))
        if cpu.type == "snp" and self.kds is not None and not cpu.certificates:
            return self._fetch_snp(parse_snp_report(cpu.evidence))
        return None

    def _fetch_bundle_gpus(self, bundle: EvidenceBundle, *, scheme: str, now: datetime) -> GpuCollateral:
        empty = GpuCollateral(rims={}, ocsp={}, ocsp_checked=False)
        if not bundle.gpus or self.gpu_source is None:
            return empty
        gpu_nonce = derive_gpu_nonce(bundle.nonce) if scheme == BINDING_V1 else bundle.nonce
        simulated = self.allow_simulated and self.anchors.gpu is not None
        steps = Steps(GPU_STEPS)
        try:
            authenticated = _authenticate(
                bundle.gpus,
                nonce=gpu_nonce,
                now=now,
                anchors=self.anchors,
                allow_simulated=simulated,
                caches=self.caches,
                steps=steps,
            )
            switches = (
                authenticate_switches(
                    bundle.switches,
                    nonce=gpu_nonce,
                    now=now,
                    anchors=self.anchors,
                    allow_simulated=simulated,
                    caches=self.caches,
                    steps=Steps(SWITCH_STEPS),
                )
                if bundle.switches
                else []
            )
        except Error:
            return empty  # not fetched for evidence that failed; the checklist says where
        fetch = self._fetcher(now)
        assert not isinstance(fetch, GpuCollateral)  # a source is configured
        gpus = fetch(authenticated, steps)
        if not switches:
            return gpus
        # One collateral section for both kinds: RIMs by id, OCSP responses by certificate.
        more = fetch(switches, Steps(SWITCH_STEPS))
        return GpuCollateral(
            rims={**gpus.rims, **more.rims},
            ocsp={**gpus.ocsp, **more.ocsp},
            ocsp_checked=gpus.ocsp_checked and more.ocsp_checked,
            ocsp_nonces={**gpus.ocsp_nonces, **more.ocsp_nonces},
        )

    def _fetch_tdx(self, quote: TdxQuote) -> TdxCollateral:
        assert self.pcs is not None
        try:
            return self.pcs.tdx_collateral(quote)
        except Error as exc:
            exc.step = exc.step if exc.step not in (None, "collateral") else TDX_STEPS[2]
            raise

    def _fetch_snp(self, report: SnpReport) -> SnpCollateral:
        assert self.kds is not None
        try:
            return self.kds.snp_collateral(report, report.product or SnpProduct.MILAN)
        except Error as exc:
            exc.step = exc.step if exc.step not in (None, "collateral") else SNP_STEPS[1]
            raise

    # -- composite ----------------------------------------------------------------------------------

    def verify_bundle(
        self,
        bundle: EvidenceBundle,
        *,
        now: datetime | None = None,
        expected_nonce: bytes | None = None,
        skip_freshness_check: bool = False,
        scheme: str = BINDING_V1,
        collateral: CollateralBundle | None = None,
    ) -> VerifiedEvidence:
        """Verify a composite evidence bundle (``COMPOSITE_STEPS``): CPU evidence, binding, GPUs.

        Collateral: ``collateral``, else the bundle's embedded collateral, else fetched — the CPU
        part from Intel PCS / AMD KDS, the GPU part from ``gpu_source`` after the GPU evidence is
        authenticated.

        Args:
            bundle: The bundle (``ccai.evidence.load_evidence_bundle``).
            now: The verification time (default: pinned ``at``, else now).
            expected_nonce: The nonce this verifier issued; the bundle must carry it. Required
                unless ``skip_freshness_check``.
            skip_freshness_check: Verify without a nonce. Dangerous: a recorded bundle then
                passes again and again; the overall claims say ``x-ccai-freshness: "not-checked"``.
            scheme: The binding scheme to require (``ccai/composite/v1``, or the weaker foreign
                ``secretvm/nonce-only`` by name).
            collateral: A collateral bundle to use.

        Returns:
            One verified result with per-GPU, CPU and overall claims and ``steps``.

        Raises:
            UsageError: no ``expected_nonce`` without ``skip_freshness_check`` (or both).
            Error: as :func:`~ccai.verify.verify_composite`, with ``steps`` on the error.
        """
        # Before any collateral is fetched: a call that cannot say whether the bundle is fresh is refused.
        check_freshness_arguments(expected_nonce, skip_freshness_check=skip_freshness_check)
        when = self._now(now)
        coll = collateral if collateral is not None else load_embedded_collateral(bundle)
        fetched_cpu: TdxCollateral | SnpCollateral | None = None
        if coll is None:
            # Collateral is fetched before the checklist, as one unit of I/O: the CPU part from
            # Intel PCS / AMD KDS, the GPU part only for GPU evidence that passed the evidence-only
            # steps (for anything else the checklist reports the failure at its step).
            fetched_cpu = self._fetch_bundle_cpu(bundle)
            coll = CollateralBundle(gpu=self._fetch_bundle_gpus(bundle, scheme=scheme, now=when))

        def gpu_stage(items: Sequence[GpuEvidence], gpu_nonce: bytes) -> VerifiedEvidence:
            return run_gpu_checklist(
                items,
                nonce=gpu_nonce,
                now=when,
                collateral=coll.gpu,
                policy=DEFER_APPRAISAL,
                anchors=self.anchors,
                allow_simulated=self.allow_simulated and self.anchors.gpu is not None,
                claims_version="3.0",
                reported_cc_mode=None,
                caches=self.caches,
            )

        return run_composite(
            bundle,
            now=when,
            collateral=coll,
            cpu_collateral=(lambda: fetched_cpu) if fetched_cpu is not None else None,
            expected_nonce=expected_nonce,
            skip_freshness_check=skip_freshness_check,
            scheme=scheme,
            policy=self._composite_policy(ppcie=bool(bundle.switches)),
            anchors=self.anchors,
            allow_simulated=self.allow_simulated,
            gpu_stage=gpu_stage,
            ppcie_stage=ppcie_stage_for(
                now=when,
                collateral=coll.gpu,
                anchors=self.anchors,
                allow_simulated=self.allow_simulated and self.anchors.gpu is not None,
                caches=self.caches,
            ),
        )
