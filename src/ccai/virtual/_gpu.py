"""The virtual CC GPU: a :class:`~ccai.device.GpuBackend` whose state lives in ``$CCAI_HOME``.

It plays 1–8 Hopper or Blackwell GPUs with a configurable driver and VBIOS, CC mode
(on / off / devtools), ready state, memory partition and key-rotation threshold. Its state is a
small JSON file (``virtual-gpu.json``), written atomically, so successive CLI calls see each
other's changes. Evidence is in NVIDIA's exact formats and signed by ccai's test PKI
(:class:`~ccai.virtual._gpu_pki.VirtualPki`); it is marked ``simulated`` everywhere and no
verifier trusts it unless the caller passes ``allow_simulated=True``.

Faults can be injected (and persist in the state file) so tests and demos can show each
verification step failing for the right reason.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
import uuid
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ccai._home import ccai_home
from ccai.device import (
    Architecture,
    CcMode,
    CcStatus,
    CpuCcCapability,
    GpuInfo,
    MultiGpuMode,
)
from ccai.errors import CollateralUnavailable, DeviceNotSupported, UsageError
from ccai.virtual._common import dump_state, read_state, write_private_file
from ccai.virtual._gpu_model import (
    MODELS,
    VirtualGpuModel,
    check_driver_version,
    check_vbios_version,
    driver_rim_id,
    model_for,
    vbios_rim_id,
)
from ccai.virtual._gpu_pki import VirtualPki
from ccai.virtual._gpu_report import (
    FeatureFlag,
    GoldenMeasurement,
    build_report,
    fwid_for,
    golden_measurements,
    runtime_measurements,
)
from ccai.virtual._gpu_rim import build_rim
from ccai.virtual._switch import (
    DEFAULT_SWITCH_BIOS,
    switch_bios_rim,
    switch_bios_rim_id,
    switch_chain,
    switch_report,
)

__all__ = [
    "DEFAULT_DRIVER_VERSION",
    "DEFAULT_SEED",
    "STATE_FILE",
    "VirtualFault",
    "VirtualGpuBackend",
    "VirtualTrustAnchors",
]

STATE_FILE = "virtual-gpu.json"
DEFAULT_DRIVER_VERSION = "570.124.06"
#: The seed used when none is given: public, so everybody's default virtual GPU is the same.
DEFAULT_SEED = b"ccai virtual CC GPU default seed v1"
MAX_GPUS = 8
#: NVSwitches of an HGX H100/H200 board.
MAX_SWITCHES = 4
#: The GPU and the switch the protected-PCIe faults act on.
_FAULTY_GPU, _FAULTY_SWITCH = 1, 1
_STATE_FORMAT = "ccai-virtual-gpu/1"
#: NVML_CC_KEY_ROTATION_THRESHOLD_ATTACKER_ADVANTAGE_MIN/MAX (gpu-evidence.md §3.1).
KEY_ROTATION_MIN, KEY_ROTATION_MAX = 50, 65


class VirtualFault(enum.StrEnum):
    """Defects the virtual GPU can be told to produce (persisted, so a CLI run sees them).

    * ``WRONG_NONCE``: the report's signed request carries a different nonce (signature still valid).
    * ``CORRUPT_SIGNATURE``: one byte of the report signature is flipped.
    * ``EXPIRED_CERTIFICATE``: the attestation leaf certificate's validity ended on 2024-01-01.
    * ``REVOKED_CERTIFICATE``: each GPU's BROM certificate (chain index 1) is revoked for the test
      OCSP responder (reason keyCompromise).
    * ``MEASUREMENT_DRIFT``: the model's ``drift_index`` (RIM index 9) differs from the RIM.

    Faults of a protected-PCIe system (``--switches N``, docs/ppcie.md):

    * ``SWITCH_MISSING``: the last NVSwitch gives no evidence (the GPUs still link to it).
    * ``UNKNOWN_SWITCH_PDI``: one NVLink of GPU 1 leads to a switch PDI no switch reports.
    * ``GPU_NOT_PPCIE``: GPU 1 is in multi-GPU passthrough, not protected PCIe (FEATURE_FLAG, status).
    * ``SWITCH_MEASUREMENT_DRIFT``: switch 1's BIOS measurement at RIM index 9 differs from the RIM.
    """

    WRONG_NONCE = "wrong-nonce"
    CORRUPT_SIGNATURE = "corrupt-signature"
    EXPIRED_CERTIFICATE = "expired-certificate"
    REVOKED_CERTIFICATE = "revoked-certificate"
    MEASUREMENT_DRIFT = "measurement-drift"
    SWITCH_MISSING = "switch-missing"
    UNKNOWN_SWITCH_PDI = "unknown-switch-pdi"
    GPU_NOT_PPCIE = "gpu-not-ppcie"
    SWITCH_MEASUREMENT_DRIFT = "switch-measurement-drift"


@dataclass(frozen=True, slots=True, kw_only=True)
class VirtualTrustAnchors:
    """The test PKI roots. Trust them only when the caller asked for simulation by name.

    Attributes:
        device_root_pem: ``ccai TEST Device Identity CA`` (stands in for ``NVIDIA Device Identity CA``).
        rim_root_pem: ``ccai TEST CoRIM signing Root CA`` (stands in for ``NVIDIA CoRIM signing Root CA``).
    """

    device_root_pem: bytes
    rim_root_pem: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class _State:
    seed: str  # hex
    chip: str
    gpus: int
    driver_version: str
    vbios_version: str
    mode: CcMode
    multi_gpu_mode: MultiGpuMode
    cpu_cc_capability: CpuCcCapability
    ready: bool
    key_rotation_threshold: int
    unprotected_memory: tuple[int, ...]
    boot: int = 0
    fault: VirtualFault | None = None
    switches: int = 0
    switch_bios_version: str = DEFAULT_SWITCH_BIOS
    format: str = field(default=_STATE_FORMAT)

    def to_json(self) -> bytes:
        data = asdict(self)
        data["unprotected_memory"] = list(self.unprotected_memory)
        return dump_state(data)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> _State:
        """The state a file's JSON object describes (raises ValueError/KeyError/TypeError when bad)."""
        state = cls(
            seed=str(data["seed"]),
            chip=str(data["chip"]),
            gpus=int(data["gpus"]),
            driver_version=check_driver_version(str(data["driver_version"])),
            vbios_version=check_vbios_version(str(data["vbios_version"])),
            mode=CcMode(data["mode"]),
            multi_gpu_mode=MultiGpuMode(data["multi_gpu_mode"]),
            cpu_cc_capability=CpuCcCapability(data["cpu_cc_capability"]),
            ready=bool(data["ready"]),
            key_rotation_threshold=int(data["key_rotation_threshold"]),
            unprotected_memory=tuple(int(x) for x in data["unprotected_memory"]),
            boot=int(data.get("boot", 0)),
            fault=VirtualFault(data["fault"]) if data.get("fault") else None,
            switches=int(data.get("switches", 0)),
            switch_bios_version=check_vbios_version(
                str(data.get("switch_bios_version", DEFAULT_SWITCH_BIOS))
            ),
        )
        bytes.fromhex(state.seed)
        if state.chip not in MODELS or not 1 <= state.gpus <= MAX_GPUS:
            raise ValueError("chip or GPU count out of range")
        if not 0 <= state.switches <= MAX_SWITCHES:
            raise ValueError("switch count out of range")
        if len(state.unprotected_memory) != state.gpus:
            raise ValueError("one unprotected memory size per GPU expected")
        return state


def _seed_bytes(seed: bytes | str) -> bytes:
    return seed.encode() if isinstance(seed, str) else bytes(seed)


class VirtualGpuBackend:
    """The virtual CC GPU. Satisfies :class:`~ccai.device.GpuBackend`.

    Build one with :meth:`open` (load the state, or create the default) or :meth:`create`
    (write fresh state). Every setter persists immediately.
    """

    def __init__(self, state: _State, home: Path) -> None:
        """Use :meth:`open` or :meth:`create` instead."""
        self._state = state
        self._home = home
        self._pki: VirtualPki | None = None
        self._rims: dict[str, bytes] = {}

    # -- construction ----------------------------------------------------------------------------

    @classmethod
    def open(cls, home: Path | None = None) -> VirtualGpuBackend:
        """Load the virtual GPU from ``home`` (default ``$CCAI_HOME``), creating the default one if absent.

        The default is one Hopper H100 with driver :data:`DEFAULT_DRIVER_VERSION`, CC on, not ready.

        Raises:
            UsageError: the state file exists but is damaged.
        """
        home = home if home is not None else ccai_home()
        state = read_state(
            home / STATE_FILE,
            state_format=_STATE_FORMAT,
            what="virtual GPU",
            hint="recreate it, e.g. `ccai gpu init --simulate` or VirtualGpuBackend.create()",
            build=_State.from_dict,
        )
        return cls.create(home=home) if state is None else cls(state, home)

    @classmethod
    def create(
        cls,
        *,
        home: Path | None = None,
        gpus: int = 1,
        architecture: Architecture = Architecture.HOPPER,
        chip: str | None = None,
        driver_version: str = DEFAULT_DRIVER_VERSION,
        vbios_version: str | None = None,
        mode: CcMode = CcMode.ON,
        multi_gpu_mode: MultiGpuMode = MultiGpuMode.NONE,
        cpu_cc_capability: CpuCcCapability = CpuCcCapability.TDX,
        seed: bytes | str = DEFAULT_SEED,
        switches: int = 0,
    ) -> VirtualGpuBackend:
        """Create (or overwrite) the virtual GPU state.

        Args:
            home: State directory (default ``$CCAI_HOME``).
            gpus: Number of GPUs, 1–8.
            architecture: Hopper or Blackwell.
            chip: ``GH100`` (Hopper), ``GB100`` (B200, default Blackwell) or ``GB202`` (RTX PRO 6000).
            driver_version: Driver version, e.g. ``570.124.06``.
            vbios_version: VBIOS version (``96.00.74.00.1C``); default per chip.
            mode: CC mode at "boot".
            multi_gpu_mode: ``none`` or ``protected-pcie`` (Hopper only; sets FEATURE_FLAG = PPCIe).
            cpu_cc_capability: The CPU TEE the virtual driver reports.
            seed: Seed of the test PKI (bytes, or text taken as UTF-8).
            switches: NVSwitches of the system, 0–4 (an HGX board has 4; needs protected PCIe).

        Raises:
            UsageError: an argument is out of range or inconsistent.
        """
        model = model_for(architecture, chip)
        if not 1 <= gpus <= MAX_GPUS:
            raise UsageError(
                f"the virtual GPU supports 1–{MAX_GPUS} GPUs", expected=f"1..{MAX_GPUS}", actual=gpus
            )
        if multi_gpu_mode is MultiGpuMode.NVLINK_ENCRYPTION:
            raise UsageError(
                "the virtual GPU does not simulate NVLink encryption", hint="use none or protected-pcie"
            )
        if multi_gpu_mode is MultiGpuMode.PROTECTED_PCIE and model.architecture is not Architecture.HOPPER:
            raise UsageError("the virtual GPU simulates protected PCIe on Hopper only")
        if not 0 <= switches <= MAX_SWITCHES:
            raise UsageError(
                f"the virtual system supports 0–{MAX_SWITCHES} NVSwitches",
                expected=f"0..{MAX_SWITCHES}",
                actual=switches,
            )
        if switches and multi_gpu_mode is not MultiGpuMode.PROTECTED_PCIE:
            raise UsageError(
                "virtual NVSwitches need protected-PCIe mode",
                hint="--multi-gpu-mode protected-pcie (or --ppcie)",
            )
        seed_raw = _seed_bytes(seed)
        if not seed_raw:
            raise UsageError("the seed must not be empty")
        state = _State(
            seed=seed_raw.hex(),
            chip=model.chip,
            gpus=gpus,
            driver_version=check_driver_version(driver_version),
            vbios_version=check_vbios_version(vbios_version or model.default_vbios),
            mode=mode,
            multi_gpu_mode=multi_gpu_mode,
            cpu_cc_capability=cpu_cc_capability,
            ready=False,
            key_rotation_threshold=KEY_ROTATION_MIN,
            unprotected_memory=(0,) * gpus,
            switches=switches,
        )
        backend = cls(state, home if home is not None else ccai_home())
        backend._save()
        return backend

    def _save(self) -> None:
        write_private_file(self._home / STATE_FILE, self._state.to_json())

    def _update(self, **changes: Any) -> None:
        self._state = replace(self._state, **changes)
        self._save()

    # -- facts -----------------------------------------------------------------------------------

    @property
    def model(self) -> VirtualGpuModel:
        """The GPU model every virtual GPU of this system plays."""
        return MODELS[self._state.chip]

    @property
    def home(self) -> Path:
        """The directory holding the state file."""
        return self._home

    @property
    def gpu_count(self) -> int:
        """Number of virtual GPUs."""
        return self._state.gpus

    @property
    def mode(self) -> CcMode:
        """Current CC mode."""
        return self._state.mode

    @property
    def fault(self) -> VirtualFault | None:
        """The injected fault, if any."""
        return self._state.fault

    @property
    def seed(self) -> bytes:
        """The test PKI seed."""
        return bytes.fromhex(self._state.seed)

    def _check_index(self, index: int) -> None:
        if not 0 <= index < self._state.gpus:
            raise UsageError(
                f"no virtual GPU {index}",
                expected=f"0..{self._state.gpus - 1}",
                actual=index,
                step="select GPU",
            )

    def _uuid(self, index: int) -> str:
        digest = hashlib.sha256(b"ccai virtual gpu uuid\x00" + self.seed + bytes([index])).digest()
        return f"GPU-{uuid.UUID(bytes=digest[:16], version=4)}"

    def status(self) -> CcStatus:
        """The CC state of the virtual system and its GPUs (what ``nvidia-smi conf-compute -q`` shows)."""
        s, model = self._state, self.model
        cc_on = s.mode is not CcMode.OFF
        gpus = []
        for i in range(s.gpus):
            unprotected = s.unprotected_memory[i]
            gpus.append(
                GpuInfo(
                    index=i,
                    name=model.name,
                    uuid=self._uuid(i),
                    architecture=model.architecture,
                    vbios_version=s.vbios_version,
                    board_id=0x100 * (i + 1),
                    protected_memory_total=model.memory_total - unprotected if cc_on else 0,
                    protected_memory_used=0,
                    unprotected_memory_total=unprotected if cc_on else model.memory_total,
                    unprotected_memory_used=0,
                )
            )
        return CcStatus(
            driver_version=s.driver_version,
            cc_feature=cc_on,
            devtools=s.mode is CcMode.DEVTOOLS,
            environment="simulated",
            multi_gpu_mode=s.multi_gpu_mode,
            cpu_cc_capability=s.cpu_cc_capability,
            gpu_cc_capable=True,
            gpus_ready=s.ready,
            key_rotation_threshold=s.key_rotation_threshold if cc_on else None,
            gpus=tuple(gpus),
            simulated=True,
        )

    # -- setters ---------------------------------------------------------------------------------

    def set_ready(self, ready: bool) -> None:
        """Set the system-wide GPUs-ready state.

        Raises:
            DeviceNotSupported: CC mode is off (there is no ready gate then).
        """
        self._require_cc("set the GPUs-ready state")
        self._update(ready=bool(ready))

    def set_unprotected_memory(self, index: int, size: int) -> None:
        """Set GPU ``index``'s unprotected memory in bytes (a multiple of 1 KiB, at most the framebuffer).

        Raises:
            UsageError: bad index or size.
            DeviceNotSupported: CC mode is off.
        """
        self._check_index(index)
        self._require_cc("set the unprotected memory size")
        if size < 0 or size > self.model.memory_total or size % 1024:
            raise UsageError(
                "unprotected memory must be a multiple of 1 KiB between 0 and the framebuffer size",
                expected=f"0..{self.model.memory_total}",
                actual=size,
            )
        sizes = list(self._state.unprotected_memory)
        sizes[index] = size
        self._update(unprotected_memory=tuple(sizes))

    def set_key_rotation_threshold(self, max_attacker_advantage: int) -> None:
        """Set the key-rotation threshold (NVML accepts 50–65).

        Raises:
            UsageError: outside 50–65.
            DeviceNotSupported: CC mode is off.
        """
        self._require_cc("set the key-rotation threshold")
        if not KEY_ROTATION_MIN <= max_attacker_advantage <= KEY_ROTATION_MAX:
            raise UsageError(
                "key-rotation threshold out of range",
                expected=f"{KEY_ROTATION_MIN}..{KEY_ROTATION_MAX}",
                actual=max_attacker_advantage,
            )
        self._update(key_rotation_threshold=max_attacker_advantage)

    def set_cc_mode(self, mode: CcMode) -> None:
        """Switch CC mode. Like a real mode switch this "resets" the GPUs: the ready state drops and
        the next boot gets new attestation keys (new leaf certificates)."""
        self._update(mode=CcMode(mode), ready=False, boot=self._state.boot + 1)

    def inject_fault(self, fault: VirtualFault | None) -> None:
        """Make subsequent evidence defective in one way (``None`` clears it). Persisted."""
        self._update(fault=VirtualFault(fault) if fault is not None else None)

    def _require_cc(self, what: str) -> None:
        if self._state.mode is CcMode.OFF:
            raise DeviceNotSupported(
                f"cannot {what}: CC mode is off on the virtual GPU", hint="ccai gpu set-mode on --simulate"
            )

    # -- evidence --------------------------------------------------------------------------------

    @property
    def pki(self) -> VirtualPki:
        """The test PKI, with every certificate of this system's chains issued (for OCSP responders)."""
        if self._pki is None:
            pki = VirtualPki(self.seed, cache_dir=self._home)
            if self._state.fault is VirtualFault.REVOKED_CERTIFICATE:
                # Revoke each GPU's BROM certificate: chain index 1, which verifiers check by OCSP.
                revoked = [pki.device_id(self.model, i) for i in range(self._state.gpus)]
                pki = VirtualPki(self.seed, cache_dir=self._home, revoked=revoked)
            for i in range(self._state.gpus):
                self._chain(pki, i)
            pki.rim_chain(self.model)
            pki.save_cache()
            self._pki = pki
        return self._pki

    def _fwid(self) -> bytes:
        return fwid_for(self.model, self._state.vbios_version)

    def _chain(self, pki: VirtualPki, index: int) -> tuple[x509.Certificate, ...]:
        return pki.device_chain(
            self.model,
            index,
            boot=self._state.boot,
            fwid=self._fwid(),
            expired=self._state.fault is VirtualFault.EXPIRED_CERTIFICATE,
        )

    def revoked_serials(self) -> frozenset[int]:
        """Serials the test OCSP responder must answer ``revoked`` for (non-empty only under
        :attr:`VirtualFault.REVOKED_CERTIFICATE`)."""
        return self.pki.revoked_serials

    def certificate_chain(self, index: int) -> bytes:
        """GPU ``index``'s attestation chain as concatenated PEM, leaf first, test root last.

        Raises:
            UsageError: no such GPU.
        """
        self._check_index(index)
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in self._chain(self.pki, index))

    def golden_measurements(self) -> tuple[GoldenMeasurement, ...]:
        """The 64 golden entries the RIMs carry for this driver and VBIOS."""
        return golden_measurements(self.model, self._state.driver_version, self._state.vbios_version)

    def measurements(self, index: int) -> tuple[bytes, ...]:
        """The 64 values GPU ``index`` reports now (mode and faults applied)."""
        self._check_index(index)
        return runtime_measurements(
            self.model,
            self.golden_measurements(),
            gpu_index=index,
            devtools=self._state.mode is CcMode.DEVTOOLS,
            drift=self._state.fault is VirtualFault.MEASUREMENT_DRIFT,
        )

    def _feature_flag(self, index: int = 0) -> int:
        if self._state.fault is VirtualFault.GPU_NOT_PPCIE and index == _FAULTY_GPU:
            return FeatureFlag.MPT
        if self._state.multi_gpu_mode is MultiGpuMode.PROTECTED_PCIE:
            return FeatureFlag.PPCIE
        return FeatureFlag.MPT if self._state.gpus > 1 else FeatureFlag.SPT

    def _switch_pdis(self, index: int = 0) -> bytes | None:
        if self._state.multi_gpu_mode is not MultiGpuMode.PROTECTED_PCIE:
            return None
        # 18 NVLinks spread over 4 switches, as on an HGX board (gpu-evidence.md §5.1, TLV 22).
        pdis = [self.pki.derive_bytes(f"switch-pdi:{k}", 8) for k in range(4)]
        links = [pdis[(link // 2) % 4] for link in range(18)]
        if self._state.fault is VirtualFault.UNKNOWN_SWITCH_PDI and index == _FAULTY_GPU:
            links[0] = self.pki.derive_bytes("switch-pdi:rogue", 8)
        return b"".join(links)

    def attestation_report(self, index: int, nonce: bytes) -> bytes:
        """A signed SPDM attestation report of GPU ``index`` for the 32-byte ``nonce``.

        Raises:
            UsageError: no such GPU, or the nonce is not 32 bytes.
            DeviceNotSupported: CC mode is off.
        """
        self._check_index(index)
        if len(nonce) != 32:
            raise UsageError("the attestation nonce must be 32 bytes", expected=32, actual=len(nonce))
        self._require_cc("produce an attestation report")
        fault = self._state.fault
        request_nonce = bytes(nonce)
        if fault is VirtualFault.WRONG_NONCE:
            request_nonce = hashlib.sha256(b"ccai virtual gpu wrong nonce\x00" + request_nonce).digest()
        leaf = self.pki.leaf(
            self.model,
            index,
            boot=self._state.boot,
            fwid=self._fwid(),
            expired=fault is VirtualFault.EXPIRED_CERTIFICATE,
        )
        report = build_report(
            self.model,
            driver_version=self._state.driver_version,
            vbios_version=self._state.vbios_version,
            measurements=self.measurements(index),
            request_nonce=request_nonce,
            responder_nonce=secrets.token_bytes(32),
            fwid=self._fwid(),
            feature_flag=self._feature_flag(index),
            signing_key=leaf.private_key,
            switch_pdis=self._switch_pdis(index),
        )
        if fault is VirtualFault.CORRUPT_SIGNATURE:
            broken = bytearray(report)
            broken[-48] ^= 0x01  # inside s
            report = bytes(broken)
        return report

    # -- RIMs and trust anchors ------------------------------------------------------------------

    def rim_ids(self, index: int) -> tuple[str, str]:
        """The (driver, VBIOS) RIM ids for GPU ``index``, derived as NVIDIA derives them."""
        self._check_index(index)
        return (
            driver_rim_id(self.model, self._state.driver_version),
            vbios_rim_id(self.model, self._state.vbios_version),
        )

    def rim(self, rim_id: str) -> bytes:
        """The signed RIM XML for ``rim_id`` (one of :meth:`rim_ids`).

        Raises:
            CollateralUnavailable: this virtual system has no RIM with that id.
        """
        cached = self._rims.get(rim_id)
        if cached is not None:
            return cached
        if self._state.switches and rim_id == self.switch_rim_id():
            xml = switch_bios_rim(self.pki, self._state.switch_bios_version)
            self._rims[rim_id] = xml
            return xml
        driver_id, vbios_id = self.rim_ids(0)
        if rim_id == driver_id:
            component, version = "driver", self._state.driver_version
        elif rim_id == vbios_id:
            component, version = "vbios", self._state.vbios_version
        else:
            raise CollateralUnavailable(
                f"the virtual GPU has no RIM {rim_id!r}", expected=f"{driver_id} or {vbios_id}", actual=rim_id
            )
        pki = self.pki
        chain = [c.public_bytes(serialization.Encoding.PEM) for c in pki.rim_chain(self.model)]
        xml = build_rim(
            self.model,
            component=component,
            version=version,
            golden=self.golden_measurements(),
            signer=pki.rim_signer(self.model),
            chain=chain,
        )
        self._rims[rim_id] = xml
        return xml

    # -- NVSwitches (protected PCIe) -------------------------------------------------------------

    @property
    def switch_count(self) -> int:
        """NVSwitches of the virtual system (0 without protected PCIe)."""
        return self._state.switches

    def _check_switch(self, index: int) -> None:
        if not 0 <= index < self._state.switches:
            raise UsageError(
                f"no virtual NVSwitch {index}", expected=f"0..{self._state.switches - 1}", actual=index
            )

    def switch_pdi(self, index: int) -> bytes:
        """Switch ``index``'s DEVICE_PDI as it signs it (the GPUs list it byte-reversed)."""
        self._check_switch(index)
        return self.pki.derive_bytes(f"switch-pdi:{index}", 8)[::-1]

    def gpu_pdi(self, index: int) -> bytes:
        """GPU ``index``'s PDI, as the switches list it in SWITCH_GPU_PDIS."""
        self._check_index(index)
        return self.pki.derive_bytes(f"gpu-pdi:{index}", 8)

    def switch_rim_id(self) -> str:
        """The switches' BIOS RIM id (``NV_SWITCH_BIOS_5612_0002_890_<BIOS>``)."""
        return switch_bios_rim_id(self._state.switch_bios_version)

    def switch_certificate_chain(self, index: int) -> bytes:
        """Switch ``index``'s attestation chain as concatenated PEM, leaf first, test root last."""
        self._check_switch(index)
        chain = switch_chain(self.pki, index, boot=self._state.boot)
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain)

    def switch_attestation_report(self, index: int, nonce: bytes) -> bytes:
        """A signed LS10 attestation report of switch ``index`` for the 32-byte ``nonce``.

        Raises:
            UsageError: no such switch, or the nonce is not 32 bytes.
            DeviceNotSupported: CC mode is off.
        """
        self._check_switch(index)
        if len(nonce) != 32:
            raise UsageError("the attestation nonce must be 32 bytes", expected=32, actual=len(nonce))
        self._require_cc("produce an NVSwitch attestation report")
        return switch_report(
            self.pki,
            index,
            boot=self._state.boot,
            bios_version=self._state.switch_bios_version,
            device_pdi=self.switch_pdi(index),
            gpu_pdis=[self.gpu_pdi(i) for i in range(self._state.gpus)],
            request_nonce=bytes(nonce),
            responder_nonce=secrets.token_bytes(32),
            drift=self._state.fault is VirtualFault.SWITCH_MEASUREMENT_DRIFT and index == _FAULTY_SWITCH,
        )

    def attested_switches(self) -> int:
        """How many switches answer an attestation request (one fewer under ``SWITCH_MISSING``)."""
        missing = self._state.fault is VirtualFault.SWITCH_MISSING and self._state.switches > 0
        return self._state.switches - (1 if missing else 0)

    def trust_anchors(self) -> VirtualTrustAnchors:
        """The test PKI's roots (device identity and RIM signing). Never trust them by default."""
        pki = self.pki
        return VirtualTrustAnchors(
            device_root_pem=pki.device_root.certificate_pem, rim_root_pem=pki.rim_root.certificate_pem
        )
