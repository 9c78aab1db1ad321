"""The virtual CPU TEE: a TDX or SEV-SNP guest whose state lives in ``$CCAI_HOME``.

It is the CPU half of ccai's *virtual confidential VM* (the virtual CC GPUs of
:class:`~ccai.virtual.VirtualGpuBackend` in the same ``$CCAI_HOME`` are the GPU half). Its state is
a small JSON file (``virtual-tee.json``): the flavour (``tdx`` or ``snp``), the test-PKI seed, the
TDX quote version, whether the guest is a debug guest, and a boot counter (a new boot gets a new
attestation key, as a real TD gets a fresh QE key per platform boot).

Evidence is in the exact vendor layouts (:mod:`ccai.virtual._tdx`, :mod:`ccai.virtual._snp`)
and signed by the test PKI (:class:`~ccai.virtual._tee_pki.VirtualTeePki`); it is marked simulated
and no verifier trusts it unless the caller passes ``allow_simulated=True`` and these anchors.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ccai._home import ccai_home
from ccai.collateral import SnpCollateral, TdxCollateral
from ccai.errors import UsageError
from ccai.tee import CpuQuote
from ccai.virtual._common import dump_state, read_state, write_private_file
from ccai.virtual._snp import SnpPlatform, build_snp_report, chip_id, snp_collateral
from ccai.virtual._tdx import TdxPlatform, build_tdx_quote, tdx_collateral
from ccai.virtual._tee_pki import VirtualTeePki

__all__ = ["DEFAULT_TEE_SEED", "TEE_STATE_FILE", "VirtualCpuTee", "VirtualTeeAnchors"]

TEE_STATE_FILE = "virtual-tee.json"
#: The public default seed (everybody's default virtual TEE is the same).
DEFAULT_TEE_SEED = b"ccai virtual CPU TEE default seed v1"
_STATE_FORMAT = "ccai-virtual-tee/1"
_TEES = ("tdx", "snp")
# TDATTRIBUTES: SEPT_VE_DISABLE (bit 28); DEBUG is bit 0 (cpu-evidence.md §2.4).
_TD_ATTRIBUTES = 1 << 28
_XFAM = bytes.fromhex("e718060000000000")


@dataclass(frozen=True, slots=True, kw_only=True)
class VirtualTeeAnchors:
    """The virtual TEE's test roots. Trust them only when the caller asked for simulation by name.

    Attributes:
        tee: ``"tdx"`` or ``"snp"``.
        sgx_root: ``ccai TEST SGX Root CA`` (stands in for the Intel SGX Root CA), TDX only.
        ark: ``ARK-<product>`` (stands in for AMD's ARK), SNP only.
        ask: ``SEV-<product>`` (stands in for AMD's ASK), SNP only.
        product: The SNP product name, SNP only.
    """

    tee: str
    sgx_root: x509.Certificate | None = None
    ark: x509.Certificate | None = None
    ask: x509.Certificate | None = None
    product: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class _State:
    tee: str
    seed: str  # hex
    quote_version: int = 4
    debug: bool = False
    boot: int = 0
    format: str = field(default=_STATE_FORMAT)

    def to_json(self) -> bytes:
        return dump_state(asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> _State:
        """The state a file's JSON object describes (raises ValueError/KeyError/TypeError when bad)."""
        state = cls(
            tee=str(data["tee"]),
            seed=str(data["seed"]),
            quote_version=int(data.get("quote_version", 4)),
            debug=bool(data.get("debug", False)),
            boot=int(data.get("boot", 0)),
        )
        bytes.fromhex(state.seed)
        _check(state.tee, state.quote_version)
        return state


def _check(tee: str, quote_version: int) -> None:
    if tee not in _TEES:
        raise UsageError(f"unknown virtual TEE {tee!r}", expected=list(_TEES), actual=tee)
    if quote_version not in (4, 5):
        raise UsageError("TDX quote version must be 4 or 5", expected="4 | 5", actual=quote_version)


class VirtualCpuTee:
    """The virtual TDX / SEV-SNP guest. Build it with :meth:`open` or :meth:`create`."""

    def __init__(self, state: _State, home: Path) -> None:
        """Use :meth:`open` or :meth:`create` instead."""
        self._state = state
        self._home = home
        self._pki: VirtualTeePki | None = None
        self.tdx_platform = TdxPlatform()
        self.snp_platform = SnpPlatform()

    @classmethod
    def create(
        cls,
        *,
        home: Path | None = None,
        tee: str = "tdx",
        seed: bytes | str = DEFAULT_TEE_SEED,
        quote_version: int = 4,
        debug: bool = False,
    ) -> VirtualCpuTee:
        """Create (or overwrite) the virtual TEE's state.

        Args:
            home: State directory (default ``$CCAI_HOME``).
            tee: ``"tdx"`` or ``"snp"``.
            seed: Seed of the test PKI (bytes, or text taken as UTF-8).
            quote_version: TDX quote version, 4 or 5.
            debug: Make it a debug guest (TD DEBUG attribute / SNP POLICY.DEBUG).

        Raises:
            UsageError: an argument is out of range.
        """
        _check(tee, quote_version)
        raw = seed.encode() if isinstance(seed, str) else bytes(seed)
        if not raw:
            raise UsageError("the seed must not be empty")
        state = _State(tee=tee, seed=raw.hex(), quote_version=quote_version, debug=debug)
        tee_obj = cls(state, home if home is not None else ccai_home())
        tee_obj._save()
        return tee_obj

    @classmethod
    def open(cls, home: Path | None = None) -> VirtualCpuTee:
        """Load the virtual TEE from ``home`` (default ``$CCAI_HOME``); create a default TDX guest if absent.

        Raises:
            UsageError: the state file is damaged.
        """
        home = home if home is not None else ccai_home()
        state = read_state(
            home / TEE_STATE_FILE,
            state_format=_STATE_FORMAT,
            what="virtual TEE",
            hint="recreate it with `ccai attest --simulate tdx|snp` or VirtualCpuTee.create()",
            build=_State.from_dict,
        )
        return cls.create(home=home) if state is None else cls(state, home)

    def _save(self) -> None:
        write_private_file(self._home / TEE_STATE_FILE, self._state.to_json())

    # -- facts ------------------------------------------------------------------------------------

    @property
    def tee(self) -> str:
        """``"tdx"`` or ``"snp"``."""
        return self._state.tee

    @property
    def seed(self) -> bytes:
        """The test PKI seed."""
        return bytes.fromhex(self._state.seed)

    @property
    def home(self) -> Path:
        """The state directory."""
        return self._home

    @property
    def pki(self) -> VirtualTeePki:
        """The test PKI."""
        if self._pki is None:
            self._pki = VirtualTeePki(self.seed, cache_dir=self._home)
        return self._pki

    def reboot(self) -> None:
        """Start a new boot: the TDX attestation key changes (persisted)."""
        self._state = replace(self._state, boot=self._state.boot + 1)
        self._save()

    def td_body_fields(self) -> dict[str, bytes]:
        """The TD's measurements and attributes (derived from the seed: the "golden" values)."""
        pki = self.pki
        attributes = _TD_ATTRIBUTES | (1 if self._state.debug else 0)
        return {
            "td_attributes": attributes.to_bytes(8, "little"),
            "xfam": _XFAM,
            "mr_td": pki.derive_bytes("mrtd"),
            "mr_config_id": bytes(48),
            "mr_owner": bytes(48),
            "mr_owner_config": bytes(48),
            "rtmr0": pki.derive_bytes("rtmr0"),
            "rtmr1": pki.derive_bytes("rtmr1"),
            "rtmr2": pki.derive_bytes("rtmr2"),
            "rtmr3": bytes(48),
        }

    def snp_measurement(self) -> bytes:
        """The guest's launch MEASUREMENT (48 bytes, derived from the seed)."""
        return self.pki.derive_bytes("snp-measurement")

    # -- evidence ---------------------------------------------------------------------------------

    def quote(self, report_data: bytes) -> CpuQuote:
        """A TDX quote or SNP report carrying ``report_data``.

        Raises:
            UsageError: ``report_data`` is not 64 bytes.
        """
        if len(report_data) != 64:
            raise UsageError("report_data must be 64 bytes", expected=64, actual=len(report_data))
        pki = self.pki
        if self.tee == "tdx":
            key = pki.derive_ec_key(f"tdx-attestation-key:{self._state.boot}", ec.SECP256R1())
            raw = build_tdx_quote(
                pki,
                self.tdx_platform,
                report_data=report_data,
                body_fields=self.td_body_fields(),
                attestation_key=key,
                version=self._state.quote_version,
            )
            return CpuQuote(type="tdx", evidence=raw, provider="ccai-virtual-tdx", simulated=True)
        raw = build_snp_report(
            pki,
            self.snp_platform,
            report_data=report_data,
            measurement=self.snp_measurement(),
            host_data=pki.derive_bytes("snp-host-data", 32),
            report_id=pki.derive_bytes(f"snp-report-id:{self._state.boot}", 32),
            debug=self._state.debug,
        )
        coll = snp_collateral(pki, self.snp_platform)
        certs = b"".join(
            x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)
            for der in (coll.vcek, coll.ask, coll.ark)
            if der is not None
        )
        return CpuQuote(
            type="snp", evidence=raw, provider="ccai-virtual-snp", certificates=certs, simulated=True
        )

    # -- collateral and anchors -------------------------------------------------------------------

    def tdx_collateral(self, now: datetime) -> TdxCollateral:
        """TCB Info, QE Identity and CRLs issued at the start of ``now``'s day, valid 30 days."""
        issued = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        return tdx_collateral(self.pki, self.tdx_platform, issued=issued)

    def snp_collateral(self, now: datetime) -> SnpCollateral:
        """The VCEK, ASK, ARK and the ARK CRL (issued at the start of ``now``'s day, valid 30 days)."""
        from ccai.virtual._tdx import COLLATERAL_LIFETIME

        issued = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        pki = self.pki
        crl = pki.crl(
            pki.ark(self.snp_platform.product), this_update=issued, next_update=issued + COLLATERAL_LIFETIME
        )
        return snp_collateral(pki, self.snp_platform, crl=crl)

    def collateral(self, now: datetime) -> TdxCollateral | SnpCollateral:
        """The collateral of this TEE's flavour (see :meth:`tdx_collateral`, :meth:`snp_collateral`)."""
        return self.tdx_collateral(now) if self.tee == "tdx" else self.snp_collateral(now)

    def chip_id(self) -> bytes:
        """The SNP CHIP_ID (the VCEK hwID)."""
        return chip_id(self.pki)

    def trust_anchors(self) -> VirtualTeeAnchors:
        """The test roots of this TEE's flavour. Never trust them by default."""
        pki = self.pki
        if self.tee == "tdx":
            return VirtualTeeAnchors(tee="tdx", sgx_root=pki.sgx_root.certificate)
        product = self.snp_platform.product
        return VirtualTeeAnchors(
            tee="snp", ark=pki.ark(product).certificate, ask=pki.ask(product).certificate, product=product
        )
