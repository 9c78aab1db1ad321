"""The gateway's confidential VM: its CPU TEE, its GPUs, their collateral, and one lock around them.

:class:`Attester` collects composite evidence (``ccai.attest.collect_composite``) with its
collateral embedded, so a client can verify the result offline. It serves two callers: the key
broker's RCAR exchange at boot (the evidence binds the broker's runtime-data hash) and the
attestation document (the evidence binds the gateway's HPKE key and TLS key). Collection runs
under a lock: the virtual hardware keeps its state in files, and real configfs-tsm report entries
are single-use, so two collections never interleave.

The hardware is either real — configfs-tsm (``ccai.tee.ConfigfsTsm``) and NVML
(``ccai.device.NvmlBackend``), collateral from NVIDIA's RIM service and OCSP responder, Intel PCS
and AMD KDS — or the virtual confidential VM under ``$CCAI_HOME`` (``ccai.virtual.open_virtual_vm``),
its collateral from ccai's development collateral server started on loopback for the
gateway's lifetime, exactly as ``ccai attest --simulate … --with-collateral`` does.

A protected-PCIe system (HGX) adds its NVSwitches' evidence to every bundle (docs/ppcie.md): the
virtual HGX's switches whenever the virtual VM has them (``ccai gpu init --simulate --gpus 8
--switches 4 --ppcie``), NVIDIA's NSCQ library on real hardware when asked (``switches=True``).
"""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ccai._time import utcnow
from ccai.errors import DeviceNotSupported, DriverNotFound, UsageError

if TYPE_CHECKING:
    from ccai.attest import SwitchSource
    from ccai.device import GpuBackend
    from ccai.evidence import EvidenceBundle
    from ccai.tee import CpuTee

__all__ = ["Attester"]

#: Where the kernel's configfs-tsm report interface lives (``ccai.tee``'s default).
_TSM_HINT = (
    "run inside a TDX or SEV-SNP guest whose kernel has configfs-tsm reports, or pass --simulate tdx|snp"
)


class Attester:
    """Composite evidence of the gateway's VM, one collection at a time.

    Build it with :meth:`open` (real hardware) or :meth:`open_virtual`; close it when done.

    Args:
        cpu: The CPU TEE.
        gpu: The GPU backend (``None``: no GPUs attested).
        sources: Keyword arguments for :func:`ccai.attest.gather_composite_collateral`
            (``gpu_source``, ``pcs``, ``kds``).
        tee: ``"tdx"`` or ``"snp"`` when known (real hardware learns it from the first report).
        simulated: Whether this is ccai's virtual hardware.
        closers: Called on :meth:`close` (the dev collateral server, NVML).
        switches: The NVSwitches attested with the GPUs (``None``: none).
    """

    def __init__(
        self,
        *,
        cpu: CpuTee,
        gpu: GpuBackend | None,
        sources: dict[str, Any],
        tee: str | None,
        simulated: bool,
        closers: contextlib.ExitStack | None = None,
        switches: SwitchSource | None = None,
    ) -> None:
        self.cpu, self.gpu, self.simulated = cpu, gpu, simulated
        self.switches = switches
        self._sources = sources
        self._tee = tee
        self._lock = threading.Lock()
        self._closers = closers or contextlib.ExitStack()
        #: Seconds the most recent collection (evidence + collateral) took.
        self.last_seconds = 0.0

    @classmethod
    def open_virtual(
        cls, *, tee: str, gpus: int | None, home: Path | None = None, switches: bool = False
    ) -> Attester:
        """The virtual confidential VM under ``home`` (default ``$CCAI_HOME``) and its dev collateral server.

        The virtual HGX's NVSwitches are attested whenever it has them; ``switches`` demands them.

        Raises:
            UsageError: bad flavour, or existing virtual hardware that differs from the request.
            DeviceNotSupported: ``switches`` on a virtual VM without NVSwitches.
        """
        from ccai.collateral import AmdKdsClient, IntelPcsClient, default_gpu_source
        from ccai.virtual import (
            create_dev_collateral_app,
            open_virtual_vm,
            run_in_background,
            settings_for_virtual_gpu,
        )

        if tee not in ("tdx", "snp"):
            raise UsageError("--simulate takes tdx or snp", actual=tee)
        cpu, backend = open_virtual_vm(tee=tee, gpus=gpus, home=home)
        if switches and not backend.switch_count:
            raise DeviceNotSupported(
                "the virtual VM has no NVSwitches",
                hint="create the virtual HGX: ccai gpu init --simulate --gpus 8 --switches 4 --ppcie",
            )
        stack = contextlib.ExitStack()
        url = stack.enter_context(
            run_in_background(create_dev_collateral_app(settings_for_virtual_gpu(backend, tee=cpu)))
        )
        sources = {
            "gpu_source": default_gpu_source(rim_service_url=url, ocsp_url=f"{url}/ocsp"),
            "pcs": IntelPcsClient(url),
            "kds": AmdKdsClient(url),
        }
        gpu = backend if gpus != 0 else None
        switch_source = backend if gpu is not None and backend.switch_count else None
        return cls(
            cpu=cpu, gpu=gpu, sources=sources, tee=tee, simulated=True, closers=stack, switches=switch_source
        )

    @classmethod
    def open(cls, *, gpus: int | None = None, switches: bool = False) -> Attester:
        """The real hardware: configfs-tsm and NVML, collateral from the vendors' services.

        ``switches``: attest the NVSwitches too, through NVIDIA's NSCQ library.

        Raises:
            DriverNotFound: no configfs-tsm report interface, no NVIDIA driver / NVML, or
                (``switches``) no NSCQ library.
            DeviceError: NVML failed to initialise; DeviceNotSupported: NSCQ cannot be driven.
        """
        from ccai.collateral import AmdKdsClient, IntelPcsClient, default_gpu_source
        from ccai.device import NvmlBackend
        from ccai.tee import ConfigfsTsm

        cpu = ConfigfsTsm()
        if not cpu.available():
            raise DriverNotFound(f"no configfs-tsm report interface at {cpu.root}", hint=_TSM_HINT)
        switch_source: SwitchSource | None = None
        if switches:
            from ccai.attest import nscq_switches

            switch_source = nscq_switches()
        stack = contextlib.ExitStack()
        gpu: Any = None
        if gpus != 0:
            gpu = NvmlBackend.open()
            stack.callback(gpu.close)
        sources = {"gpu_source": default_gpu_source(), "pcs": IntelPcsClient(), "kds": AmdKdsClient()}
        return cls(
            cpu=cpu,
            gpu=gpu,
            sources=sources,
            tee=None,
            simulated=False,
            closers=stack,
            switches=switch_source,
        )

    @property
    def tee(self) -> str:
        """``"tdx"`` or ``"snp"`` (real hardware: known after the first collection; ``tdx`` before)."""
        return self._tee or "tdx"

    def bundle(
        self,
        nonce: bytes,
        *,
        hpke_public_key: bytes | None = None,
        tls_spki_sha256: bytes | None = None,
    ) -> EvidenceBundle:
        """Collect a composite bundle bound to ``nonce`` and the keys, its collateral embedded.

        Raises:
            UsageError: bad nonce or key sizes.
            DeviceError: collection failed.
            CollateralUnavailable: an item of collateral cannot be fetched.
        """
        from ccai.attest import collect_composite, gather_composite_collateral
        from ccai.collateral import embed_collateral

        with self._lock:
            start = time.perf_counter()
            bundle = collect_composite(
                nonce=nonce,
                cpu=self.cpu,
                gpu=self.gpu,
                tls_spki_sha256=tls_spki_sha256,
                hpke_public_key=hpke_public_key,
                switches=self.switches,
            )
            if bundle.cpu is not None:
                self._tee = bundle.cpu.type
            collateral = gather_composite_collateral(bundle, now=utcnow(), **self._sources)
            bundle = embed_collateral(bundle, collateral)
            self.last_seconds = time.perf_counter() - start
        return bundle

    def document(
        self, nonce: bytes, *, hpke_public_key: bytes, tls_spki_sha256: bytes | None = None
    ) -> bytes:
        """The attestation document: the bundle as JSON (``ccai verify DOC --nonce HEX`` reads it)."""
        from ccai.evidence import dump_evidence_bundle

        return dump_evidence_bundle(
            self.bundle(nonce, hpke_public_key=hpke_public_key, tls_spki_sha256=tls_spki_sha256)
        )

    def kbs_evidence(self, nonce: bytes, bound_key: bytes) -> bytes:
        """The key broker's evidence function (:data:`ccai.kbs.EvidenceFunction`): bundle JSON binding
        the broker's runtime-data hash as the bundle's ``hpke_public_key``."""
        from ccai.evidence import dump_evidence_bundle

        return dump_evidence_bundle(self.bundle(nonce, hpke_public_key=bound_key))

    def service_token(
        self,
        url: str,
        *,
        api_key: str | None,
        hpke_public_key: bytes,
        tls_spki_sha256: bytes | None = None,
        timeout: float = 30.0,
    ) -> Any:
        """An attestation service's token for this VM and these keys, as the service returned it (its
        detached EAT JSON: ``[["JWT", overall], {"GPU-0": jwt, …}]``).

        The service appraises only bundles made for its own nonces, so this asks it for one
        (``POST URL/v1/nonce``), collects a second bundle for it binding the same keys, and posts that
        (``POST URL/v1/attest``); the token's claims name the bound HPKE (and TLS) key.

        Raises:
            CollateralUnavailable: the service cannot be reached or answered an error.
            PolicyViolation: the service's verdict is not a pass.
        """
        import httpx

        from ccai.errors import CollateralUnavailable, PolicyViolation
        from ccai.evidence import dump_evidence_bundle

        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        base = url.rstrip("/")
        try:
            with httpx.Client(timeout=timeout, headers=headers) as http:
                r = http.post(base + "/v1/nonce")
                if r.status_code != 200:
                    raise CollateralUnavailable(
                        f"the attestation service answered HTTP {r.status_code} for a nonce"
                    )
                nonce = bytes.fromhex(str(r.json()["nonce"]))
                bundle = self.bundle(nonce, hpke_public_key=hpke_public_key, tls_spki_sha256=tls_spki_sha256)
                r = http.post(
                    base + "/v1/attest",
                    content=dump_evidence_bundle(bundle),
                    headers={"Content-Type": "application/json"},
                )
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            raise CollateralUnavailable(
                f"cannot reach the attestation service: {type(exc).__name__}"
            ) from None
        try:
            answer = r.json()
        except ValueError:
            answer = {}
        if r.status_code != 200 or not isinstance(answer, dict):
            raise CollateralUnavailable(f"the attestation service answered HTTP {r.status_code}")
        token = answer.get("token")
        if answer.get("result") is not True or not isinstance(token, list | str):
            raise PolicyViolation(
                f"the attestation service did not pass the evidence ({answer.get('result')})"
            )
        return token

    def devtools_reported(self) -> bool:
        """Whether the GPU driver reports a GPU in CC DevTools mode (unsigned: it lets the key broker
        name its refusal ``devtools_on``; the signed measurements are what refuse the key)."""
        if self.gpu is None:
            return False
        with self._lock:
            return bool(self.gpu.status().devtools)

    def set_gpus_ready(self) -> bool:
        """Set the GPUs-ready state (work submission in CC mode waits on it).

        Returns:
            ``False`` when there are no GPUs, ``True`` once they are ready.

        Raises:
            DeviceNotSupported: CC mode is off; DeviceError: the driver refused.
        """
        if self.gpu is None:
            return False
        with self._lock:
            if not self.gpu.status().gpus_ready:
                self.gpu.set_ready(True)
        return True

    def close(self) -> None:
        """Stop the dev collateral server / shut NVML down."""
        self._closers.close()
