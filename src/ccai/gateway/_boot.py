"""The gateway's boot: a state machine that serves inference only after attestation and key release.

States, in order (``/health`` reports the current one)::

    collecting-evidence → fetching-key → setting-ready → loading-model → starting-engine → ready
              ↘               ↘               ↘                ↘                 ↘
                                        failed (the reason, no secret)

1. ``collecting-evidence`` — generate the HPKE server key (``ccai.ehbp.ServerKey``) and collect
   composite evidence binding it (and the TLS key's SPKI hash when serving TLS), collateral
   included: the hardware and its collateral work before anything else happens.
2. ``fetching-key`` — the KEK: through RCAR from the key broker (``ccai.kbs.fetch_kek``, the
   broker's challenge bound by fresh evidence of the same VM) or from ``--kek FILE``.
3. ``setting-ready`` — the GPUs-ready state on the GPU backend. It comes right after the broker
   accepted the GPUs' evidence and before any model byte reaches a GPU: in CC mode an H100 accepts
   no CUDA work until the ready state is set, so loading the weights or starting vLLM/SGLang first
   would fail on real hardware.
4. ``loading-model`` — in-process engine: ``ccai.sealed.load_model`` decrypts the weights straight
   into device memory, ``load_tokenizer`` the tokenizer; upstream engine: ``unseal_to_directory``
   into a fresh private directory on a RAM-backed file system (anything else is refused).
5. ``starting-engine`` — in-process: the OpenAI-compatible app over the loaded model; upstream: the
   operator's command on a loopback port, until its ``/health`` answers.
6. ``ready`` — the inference routes and the attestation document answer.

Any exception ends the boot in ``failed`` with a one-line reason; the caller stops serving and exits
non-zero (:func:`ccai.gateway.run_gateway`).
"""

from __future__ import annotations

import enum
import hashlib
import logging
import secrets
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ccai.errors import Error, UsageError
from ccai.gateway._attester import Attester
from ccai.gateway._log import log_event
from ccai.gateway._upstream import EngineStartError, UpstreamEngine, UpstreamProxy

__all__ = ["BootState", "GatewayBoot", "GatewayConfig"]

#: Where the upstream engine's plaintext model goes by default (tmpfs in every Linux VM).
DEFAULT_UNSEAL_BASE = Path("/dev/shm")  # noqa: S108 - checked to be RAM-backed before use


class BootState(enum.StrEnum):
    """The named states of :class:`GatewayBoot`."""

    COLLECTING_EVIDENCE = "collecting-evidence"
    FETCHING_KEY = "fetching-key"
    SETTING_READY = "setting-ready"
    LOADING_MODEL = "loading-model"
    STARTING_ENGINE = "starting-engine"
    READY = "ready"
    FAILED = "failed"


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayConfig:
    """What the gateway serves and how it gets the key (``ccai serve gateway``'s options).

    Attributes:
        model: The sealed model directory.
        kek_file: A KEK file (instead of the key broker).
        kbs_url: The key broker's URL (with ``resource``).
        resource: The broker resource holding the KEK, ``REPO/TYPE/TAG``.
        upstream_cmd: An external engine's command line with ``{model_dir}`` and ``{port}``; ``None``:
            the in-process transformers engine.
        simulate: ``"tdx"`` / ``"snp"``: the virtual confidential VM under ``home``; ``None``: real hardware.
        gpus: Virtual GPUs with ``simulate`` (``None``: the existing ones); ``0``: attest no GPU.
        home: The virtual hardware's state directory (default ``$CCAI_HOME``).
        switches: Attest the NVSwitches of a protected-PCIe system (NSCQ on real hardware; the
            virtual HGX's switches are attested whenever it has them, this demands them).
        host: Listen address.
        port: Listen port.
        allow_plaintext: Accept requests without EHBP (development only).
        tls_cert: TLS certificate (PEM) to serve with; its key's SPKI hash is bound in the evidence.
        tls_key: TLS private key (PEM).
        device: Where the in-process engine's weights go (``None``: ``cuda`` when available, else ``cpu``).
        model_name: The ``model`` the in-process engine answers to (default: the sealed directory's name).
        unseal_base: RAM-backed directory for the upstream engine's plaintext model.
        engine_timeout: Seconds to wait for the upstream engine's ``/health``.
        attestation_service: Base URL of a ccai attestation service whose token each document carries.
        attestation_service_key: API key for it.
        hpke_rotate_seconds: Replace the HPKE key this often once ready (``None``: only on SIGHUP or
            :meth:`GatewayBoot.rotate_key`).
    """

    model: Path
    kek_file: Path | None = None
    kbs_url: str | None = None
    resource: str | None = None
    upstream_cmd: str | None = None
    simulate: str | None = None
    gpus: int | None = None
    home: Path | None = None
    switches: bool = False
    host: str = "127.0.0.1"
    port: int = 8000
    allow_plaintext: bool = False
    tls_cert: Path | None = None
    tls_key: Path | None = None
    device: str | None = None
    model_name: str | None = None
    unseal_base: Path = DEFAULT_UNSEAL_BASE
    engine_timeout: float = 300.0
    attestation_service: str | None = None
    attestation_service_key: str | None = None
    hpke_rotate_seconds: float | None = None

    def check(self) -> None:
        """Refuse contradictory options before anything starts.

        Raises:
            UsageError: no key source or two, ``--kbs`` without ``--resource``, bad ``--simulate``.
        """
        if (self.kek_file is None) == (self.kbs_url is None):
            raise UsageError("give --kek FILE, or --kbs URL --resource REPO/TYPE/TAG (exactly one)")
        if self.kbs_url is not None and not self.resource:
            raise UsageError("--kbs needs --resource REPO/TYPE/TAG")
        if self.simulate not in (None, "tdx", "snp"):
            raise UsageError("--simulate takes tdx or snp", actual=self.simulate)
        if self.gpus is not None and self.simulate is None:
            raise UsageError("--gpus is for the virtual VM (--simulate); real hardware attests every GPU")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise UsageError("TLS needs both --tls-cert and --tls-key")
        if self.tls_cert is not None and self.tls_key is not None:
            _check_tls(self.tls_cert, self.tls_key)
        if self.hpke_rotate_seconds is not None and not self.hpke_rotate_seconds > 0:
            raise UsageError("--hpke-rotate-seconds must be positive", actual=self.hpke_rotate_seconds)
        if not self.model.is_dir():
            raise UsageError(f"no sealed model directory at {self.model}")

    @property
    def served_name(self) -> str:
        """The model name the in-process engine serves."""
        if self.model_name:
            return self.model_name
        name = self.model.name
        return name.removesuffix(".sealed") or name


def _check_tls(cert: Path, key: Path) -> None:
    """Load the certificate and key as uvicorn will, so a bad file is a usage error before serving."""
    import ssl

    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "reason", None) or exc.strerror or str(exc)
        raise UsageError(f"cannot load the TLS certificate {cert} and key {key}: {reason}") from None


def _spki_sha256(cert: Path) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        certificate = x509.load_pem_x509_certificate(cert.read_bytes())
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read the TLS certificate {cert}: {exc}") from None
    spki = certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).digest()


def _preload_engine_modules() -> None:
    """Import what the in-process engine needs (the boot thread's later imports then find them)."""
    try:
        import torch  # noqa: F401
        import transformers
        import transformers.modeling_utils  # noqa: F401  (the largest part of a model's first load)
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer  # noqa: F401
    except ImportError:
        pass  # the boot reports a missing extra where it needs it


@dataclass(slots=True)
class _Timings:
    started: float = field(default_factory=time.monotonic)
    states: dict[str, float] = field(default_factory=dict)
    ready_after: float | None = None


class GatewayBoot:
    """The boot state machine; :meth:`run` walks the states, the app reads :attr:`state`.

    Args:
        config: The gateway's configuration.
        attester_factory: Opens the VM's hardware (default: virtual with ``config.simulate``, else real).
    """

    def __init__(self, config: GatewayConfig, *, attester_factory: Any = None) -> None:
        from ccai.ehbp import ServerKey

        self.config = config
        self.state = BootState.COLLECTING_EVIDENCE
        #: One line saying why the boot failed (no secret), or ``None``.
        self.reason: str | None = None
        #: The exception the boot failed with.
        self.error: BaseException | None = None
        self.server_key = ServerKey.generate()
        #: How many times :meth:`rotate_key` replaced the key.
        self.key_rotations = 0
        self.tls_spki_sha256 = _spki_sha256(config.tls_cert) if config.tls_cert is not None else None
        self.attester: Attester | None = None
        #: The ASGI app that answers the inference routes once ready.
        self.inference_app: Any = None
        self.upstream: UpstreamEngine | None = None
        self._engine: Any = None
        self._preload: threading.Thread | None = None
        self._unseal_dir: Path | None = None
        self._attester_factory = attester_factory
        #: The base URL the gateway listens on (set by :func:`ccai.gateway.run_gateway`).
        self.url: str | None = None
        self._timings = _Timings()
        self._state_started = time.monotonic()
        self.done = threading.Event()
        self._cancelled = threading.Event()

    # -- what /health shows ------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Whether inference may be served."""
        return self.state is BootState.READY

    @property
    def boot_seconds(self) -> float | None:
        """Seconds from the start of the boot to ``ready`` (``None`` before)."""
        return self._timings.ready_after

    def health(self) -> dict[str, Any]:
        """The ``/health`` document: state, per-state seconds, and on failure the reason."""
        doc: dict[str, Any] = {
            "status": "ok" if self.ready else ("failed" if self.state is BootState.FAILED else "booting"),
            "state": self.state.value,
            "simulated": self.config.simulate is not None,
            "engine": "upstream" if self.config.upstream_cmd else "transformers",
            "states_seconds": {k: round(v, 4) for k, v in self._timings.states.items()},
        }
        if self._timings.ready_after is not None:
            doc["boot_seconds"] = round(self._timings.ready_after, 4)
        if self.reason is not None:
            doc["reason"] = self.reason
        return doc

    # -- key rotation ------------------------------------------------------------------------

    def rotate_key(self) -> bytes:
        """Replace the gateway's HPKE key with a fresh one; returns the new public key.

        From now on the attestation document binds the new key and ``/.well-known/hpke-keys`` serves
        it; a request encrypted to the old key gets EHBP's 422 key-configuration problem (the
        verifying client then attests again and resends it). Requests already running finish
        with the key they started with.
        """
        from ccai.ehbp import ServerKey

        self.server_key = ServerKey.generate()
        self.key_rotations += 1
        log_event("hpke_key_rotated", rotations=self.key_rotations)
        return self.server_key.public_key

    # -- the walk ----------------------------------------------------------------------------

    def cancel(self) -> None:
        """Stop the boot at its next state change (the gateway is shutting down)."""
        self._cancelled.set()

    def _enter(self, state: BootState) -> None:
        if self._cancelled.is_set() and state is not BootState.FAILED:
            raise UsageError("the gateway was stopped during its boot")
        now = time.monotonic()
        self._timings.states[self.state.value] = now - self._state_started
        self._state_started = now
        self.state = state
        log_event("boot_state", state=state.value)

    def run(self) -> None:
        """Walk every state; on any failure end in ``failed`` with :attr:`reason` and :attr:`error` set.

        Never raises (the caller reads :attr:`state`); :attr:`done` is set at the end.
        """
        try:
            self._run()
        except BaseException as exc:
            self._fail(exc)
        finally:
            self.done.set()

    def _fail(self, exc: BaseException) -> None:
        if not isinstance(exc, Error) and self.state in (BootState.LOADING_MODEL, BootState.STARTING_ENGINE):
            # torch / transformers failures (out of memory, an unsupported model): the engine did not start.
            exc = EngineStartError(f"the model did not load: {type(exc).__name__}: {str(exc)[:200]}")
        if isinstance(exc, Error):
            reason = exc.message
        elif isinstance(exc, ModuleNotFoundError):
            reason = f"a module the gateway needs is missing: {exc.name}"
        else:
            reason = f"{type(exc).__name__} during {self.state.value}"
        self.reason = f"{self.state.value}: {reason}"
        self.error = exc
        failed_in = self.state
        self._enter(BootState.FAILED)
        log_event(
            "boot_failed", level=logging.ERROR, state=failed_in.value, error=type(exc).__name__, reason=reason
        )
        self._release()

    def _run(self) -> None:
        config = self.config
        log_event("boot_state", state=self.state.value)
        if config.upstream_cmd is None:
            # torch and transformers take seconds to import: overlap that with evidence and RCAR
            # (joined before the model loads: transformers' lazy modules are not for two importers).
            self._preload = threading.Thread(
                target=_preload_engine_modules, name="ccai-gateway-preload", daemon=True
            )
            self._preload.start()
        factory = self._attester_factory
        if factory is None:
            if config.simulate is not None:
                self.attester = Attester.open_virtual(
                    tee=config.simulate, gpus=config.gpus, home=config.home, switches=config.switches
                )
            else:
                self.attester = Attester.open(gpus=config.gpus, switches=config.switches)
        else:
            self.attester = factory(config)
        attester = self.attester
        bundle = attester.bundle(
            secrets.token_bytes(32),
            hpke_public_key=self.server_key.public_key,
            tls_spki_sha256=self.tls_spki_sha256,
        )
        log_event(
            "evidence_collected",
            gpus=len(bundle.gpus),
            switches=len(bundle.switches),
            tee=attester.tee,
            seconds=round(attester.last_seconds, 4),
        )

        self._enter(BootState.FETCHING_KEY)
        kek = self._fetch_kek(attester)

        self._enter(BootState.SETTING_READY)
        attester.set_gpus_ready()

        self._enter(BootState.LOADING_MODEL)
        if config.upstream_cmd is None:
            model, tokenizer = self._load_in_process(kek)
        else:
            model_dir = self._unseal(kek)
        del kek

        self._enter(BootState.STARTING_ENGINE)
        if config.upstream_cmd is None:
            self.inference_app = self._engine_app(model, tokenizer)
        else:
            self.upstream = UpstreamEngine(config.upstream_cmd, model_dir=model_dir)
            seconds = self.upstream.start(timeout=config.engine_timeout)
            log_event("upstream_healthy", seconds=round(seconds, 3), port=self.upstream.port)
            self.inference_app = UpstreamProxy(self.upstream.url)

        self._timings.ready_after = time.monotonic() - self._timings.started
        self._enter(BootState.READY)
        log_event("ready", boot_seconds=round(self._timings.ready_after, 3))

    def _fetch_kek(self, attester: Attester) -> Any:
        from ccai.sealed import read_kek

        config = self.config
        if config.kek_file is not None:
            return read_kek(config.kek_file)
        from ccai.kbs import fetch_kek

        assert config.kbs_url is not None and config.resource is not None  # check() made sure
        kek = fetch_kek(
            config.kbs_url,
            config.resource,
            evidence=attester.kbs_evidence,
            tee=attester.tee,
            devtools=attester.devtools_reported(),
        )
        log_event("key_released", resource=config.resource)
        return kek

    def _device(self) -> str:
        if self.config.device is not None:
            return self.config.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    def _load_in_process(self, kek: Any) -> tuple[Any, Any]:
        from ccai.sealed import load_model, load_tokenizer

        if self._preload is not None:
            self._preload.join()
        device = self._device()
        model = load_model(self.config.model, kek, device=device)
        tokenizer = load_tokenizer(self.config.model, kek)
        log_event("model_loaded", device=device, model=self.config.served_name)
        return model, tokenizer

    def _engine_app(self, model: Any, tokenizer: Any) -> Any:
        from ccai.openai_protocol import TransformersEngine, create_engine_app

        try:
            self._engine = TransformersEngine(model, tokenizer, model_name=self.config.served_name)
            return create_engine_app(self._engine)
        except Error:
            raise
        except Exception as exc:
            raise EngineStartError(
                f"the in-process engine did not start: {type(exc).__name__}: {exc}"
            ) from None

    def _unseal(self, kek: Any) -> Path:
        from ccai.sealed import is_ram_backed, unseal_to_directory

        base = self.config.unseal_base
        if not is_ram_backed(base):
            raise UsageError(
                f"refusing to unseal into {base}: not a RAM-backed (tmpfs/ramfs) directory",
                hint="pass --unseal-dir a tmpfs directory inside the confidential VM",
            )
        try:
            work = Path(tempfile.mkdtemp(prefix="ccai-gateway-", dir=base))
        except OSError as exc:
            raise UsageError(f"cannot create a directory under {base}: {exc.strerror}") from None
        self._unseal_dir = work
        model_dir = work / "model"
        unseal_to_directory(self.config.model, model_dir, kek)
        log_event("model_unsealed", ram_backed=True)
        return model_dir

    # -- shutdown -------------------------------------------------------------------------------

    def _release(self) -> None:
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.close()
        if self.upstream is not None:
            self.upstream.stop()
        if self._unseal_dir is not None:
            shutil.rmtree(self._unseal_dir, ignore_errors=True)
            self._unseal_dir = None
        if self.attester is not None:
            self.attester.close()

    def close(self) -> None:
        """Stop the upstream engine, remove the plaintext model, stop the dev collateral server."""
        self._release()
        self.attester = None
        self.upstream = None
