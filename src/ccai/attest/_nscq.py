"""NVSwitch evidence through NVIDIA's NSCQ library (``libnvidia-nscq``), with ctypes.

NSCQ (NVSwitch Configuration and Query) ships with the NVSwitch driver and Fabric Manager of an
HGX system. Its attestation API (NSCQ API 2.x, NVIDIA's ``nscq_attestation.h``) is a session with
path observers: ``nscq_session_path_observe(session, path, callback, user_data, flags)`` calls
``callback`` once per device the path matches, with the device's UUID, a return code and the value.
The paths ccai reads:

==========================================  ====================================================
``/drv/nvswitch/{device}/uuid``             every switch's UUID (``nscq_uuid_t``, 16 bytes)
``/{nvswitch}/id/arch``                     architecture (``int8``: 0 SV10, 1 LR10, 2 LS10)
``/<label>/config/pcie_mode``               TNVL status (``int8``: bit 0 TNVL, bit 1 locked)
``/<label>/config/certificate``             certificate chain (struct passed by value)
``/<label>/config/attestation_report``      signed SPDM report for the nonce set with
                                            ``nscq_session_set_input`` (struct by value)
==========================================  ====================================================

``<label>`` is the switch's UUID label from ``nscq_uuid_to_label``. Return codes are ``int8``:
0 success, 1..127 warnings, negative errors (named in :data:`NSCQ_RETURN_CODES`). Every NSCQ error
becomes a :class:`ccai.errors.DeviceError` naming the code.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from ccai.errors import DeviceError, DeviceNotSupported, DriverNotFound, UsageError

__all__ = ["NSCQ_LIBRARY_ENV", "NSCQ_RETURN_CODES", "NscqSwitches", "load_nscq_library"]

#: Environment variable naming the NSCQ library file to load instead of the system's.
NSCQ_LIBRARY_ENV = "CCAI_NSCQ_LIBRARY"
_SONAMES = ("libnvidia-nscq.so.2", "libnvidia-nscq.so")

#: NSCQ's return codes (``nscq_rc_t``) by value.
NSCQ_RETURN_CODES: dict[int, str] = {
    0: "NSCQ_RC_SUCCESS",
    1: "NSCQ_RC_WARNING_RDT_INIT_FAILURE",
    -1: "NSCQ_RC_ERROR_NOT_IMPLEMENTED",
    -2: "NSCQ_RC_ERROR_INVALID_UUID",
    -3: "NSCQ_RC_ERROR_RESOURCE_NOT_MOUNTABLE",
    -4: "NSCQ_RC_ERROR_OVERFLOW",
    -5: "NSCQ_RC_ERROR_UNEXPECTED_VALUE",
    -6: "NSCQ_RC_ERROR_UNSUPPORTED_DRV",
    -7: "NSCQ_RC_ERROR_DRV",
    -8: "NSCQ_RC_ERROR_TIMEOUT",
    -127: "NSCQ_RC_ERROR_EXT",
    -128: "NSCQ_RC_ERROR_UNSPECIFIED",
}

_ARCH_LS10 = 2
_ARCHS = {0: "SV10", 1: "LR10", 2: "LS10"}
_TNVL_BIT = 0x1
_LOCK_BIT = 0x2
_SESSION_CREATE_MOUNT_DEVICES = 0x1
_NONCE_SIZE = 0x20
_REPORT_SIZE = 0x2000
_CHAIN_SIZE = 0x1400
_PEM_BEGIN = b"-----BEGIN CERTIFICATE-----"
# One NSCQ session at a time in this process: NSCQ's thread safety is not documented.
_SESSION_LOCK = threading.Lock()

_MISSING_MESSAGE = (
    "NVIDIA's NSCQ library (libnvidia-nscq) is not installed: this machine has no NVSwitch "
    "driver, so its switches cannot be attested"
)
_MISSING_HINT = "install the NVSwitch driver and Fabric Manager of an HGX system, or use --simulate"


class _Uuid(ctypes.Structure):
    _fields_ = [("bytes", ctypes.c_uint8 * 16)]


class _Label(ctypes.Structure):
    _fields_ = [("data", ctypes.c_char * 64)]


class _Report(ctypes.Structure):
    _fields_ = [("report_size", ctypes.c_uint32), ("report", ctypes.c_uint8 * _REPORT_SIZE)]


class _Certificate(ctypes.Structure):
    _fields_ = [("cert_chain", ctypes.c_uint8 * _CHAIN_SIZE), ("cert_chain_size", ctypes.c_uint32)]


class _SessionResult(ctypes.Structure):
    _fields_ = [("rc", ctypes.c_int8), ("session", ctypes.c_void_p)]


_UuidPtr = ctypes.POINTER(_Uuid)
# Observer callbacks: (device, rc, value, user_data). The enumeration path's first argument is
# the device index placeholder, never read.
_UUID_CALLBACK = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int8, _UuidPtr, ctypes.c_void_p)
_INT8_CALLBACK = ctypes.CFUNCTYPE(None, _UuidPtr, ctypes.c_int8, ctypes.c_int8, ctypes.c_void_p)
_REPORT_CALLBACK = ctypes.CFUNCTYPE(None, _UuidPtr, ctypes.c_int8, _Report, ctypes.c_void_p)
_CERT_CALLBACK = ctypes.CFUNCTYPE(None, _UuidPtr, ctypes.c_int8, _Certificate, ctypes.c_void_p)


def rc_name(rc: int) -> str:
    """NSCQ's name for return code ``rc`` (``NSCQ_RC_ERROR_DRV (-7)``)."""
    return f"{NSCQ_RETURN_CODES.get(rc, 'unknown NSCQ return code')} ({rc})"


def load_nscq_library(path: str | None = None) -> ctypes.CDLL:
    """Load NVIDIA's NSCQ library.

    Args:
        path: A library file to load; default ``$CCAI_NSCQ_LIBRARY``, else ``libnvidia-nscq.so.2``,
            ``libnvidia-nscq.so`` and what ``ctypes.util.find_library("nvidia-nscq")`` finds.

    Raises:
        DriverNotFound: the library is not installed, or the named file cannot be loaded.
    """
    explicit = path or os.environ.get(NSCQ_LIBRARY_ENV)
    if explicit:
        return _load(explicit)
    for name in _SONAMES:
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    found = ctypes.util.find_library("nvidia-nscq")
    if found is not None:
        return _load(found)
    raise DriverNotFound(_MISSING_MESSAGE, hint=_MISSING_HINT)


def _load(name: str) -> ctypes.CDLL:
    try:
        return ctypes.CDLL(name)
    except OSError as exc:
        message = f"the NSCQ library {name} could not be loaded: {exc}"
        raise DriverNotFound(message, hint=_MISSING_HINT) from None


def _bind(lib: ctypes.CDLL) -> dict[str, Any]:
    """The NSCQ functions ccai calls, with their C signatures.

    Raises:
        DriverNotFound: the library lacks one of them (not NSCQ API 2.x).
    """
    signatures: dict[str, tuple[Any, list[Any]]] = {
        "nscq_session_create": (_SessionResult, [ctypes.c_uint32]),
        "nscq_session_destroy": (None, [ctypes.c_void_p]),
        "nscq_session_path_observe": (
            ctypes.c_int8,
            [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint32],
        ),
        "nscq_session_set_input": (
            ctypes.c_int8,
            [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_void_p, ctypes.c_uint32],
        ),
        "nscq_uuid_to_label": (ctypes.c_int8, [_UuidPtr, ctypes.POINTER(_Label), ctypes.c_uint32]),
    }
    functions: dict[str, Any] = {}
    for name, (restype, argtypes) in signatures.items():
        try:
            fn = getattr(lib, name)
        except AttributeError:
            raise DriverNotFound(
                f"the NSCQ library lacks {name}: it does not offer NSCQ's attestation API (2.x)",
                hint="install the NVSwitch driver and Fabric Manager matching the GPU driver",
            ) from None
        fn.restype = restype
        fn.argtypes = argtypes
        functions[name] = fn
    return functions


def _pem_chain(data: bytes, label: str) -> bytes:
    """The chain NSCQ returned, as PEM (leaf first): PEM passes through, concatenated DER is encoded.

    Raises:
        DeviceError: the bytes are neither.
    """
    data = data.rstrip(b"\x00")
    if data.lstrip().startswith(_PEM_BEGIN):
        return data
    pems: list[bytes] = []
    offset = 0
    try:
        while offset < len(data):
            if data[offset] != 0x30 or offset + 2 > len(data):
                raise ValueError("not a DER SEQUENCE")
            first = data[offset + 1]
            if first < 0x80:
                header, length = 2, first
            else:
                count = first & 0x7F
                header = 2 + count
                length = int.from_bytes(data[offset + 2 : offset + header], "big")
            end = offset + header + length
            cert = x509.load_der_x509_certificate(data[offset:end])
            pems.append(cert.public_bytes(Encoding.PEM))
            offset = end
    except ValueError as exc:
        raise DeviceError(
            f"NSCQ returned a certificate chain for switch {label} that is neither PEM nor DER: {exc}"
        ) from None
    if not pems:
        raise DeviceError(f"NSCQ returned an empty certificate chain for switch {label}")
    return b"".join(pems)


class NscqSwitches:
    """The NVSwitches of this machine through NSCQ: a :class:`~ccai.attest.SwitchSource`.

    Construction enumerates the switches (UUID labels, architecture, TNVL status) in one NSCQ
    session; each report or chain request opens its own session, so nothing stays open between
    calls.

    Args:
        library: The loaded NSCQ library (:func:`load_nscq_library`).

    Attributes:
        labels: Each switch's NSCQ label, in NSCQ's enumeration order (the switch index).
        archs: Each switch's architecture (``"LS10"`` …), by label.
        tnvl_status: Each switch's TNVL status byte (bit 0 TNVL mode, bit 1 locked), by label.

    Raises:
        DeviceError: an NSCQ call failed (the error names NSCQ's return code).
        DriverNotFound: the library does not offer NSCQ's attestation API.
    """

    def __init__(self, library: ctypes.CDLL) -> None:
        self._fn = _bind(library)
        uuids: list[bytes] = []

        def on_uuid(_device: Any, rc: int, uuid: Any) -> tuple[int, bytes]:
            return rc, bytes(uuid.contents.bytes) if rc >= 0 else b""  # NULL: recorded, raised

        with self._session() as session:
            for rc, uuid in self._observe(session, b"/drv/nvswitch/{device}/uuid", _UUID_CALLBACK, on_uuid):
                self._check(rc, "enumerating the NVSwitches")
                uuids.append(uuid)
            self.labels: tuple[str, ...] = tuple(self._label(u) for u in uuids)
            self.archs: dict[str, str] = {}
            self.tnvl_status: dict[str, int] = {}
            if not self.labels:
                return
            self.archs = {
                label: _ARCHS.get(value, f"unknown ({value})")
                for label, value in self._per_switch(session, b"/{nvswitch}/id/arch", "architecture")
            }
            for label in self.labels:
                path = f"/{label}/config/pcie_mode".encode()
                for owner, value in self._per_switch(session, path, "TNVL status"):
                    self.tnvl_status[owner] = value & 0xFF

    # -- SwitchSource ---------------------------------------------------------------------------

    def attested_switches(self) -> int:
        """How many switches NSCQ enumerated."""
        return len(self.labels)

    def switch_attestation_report(self, index: int, nonce: bytes) -> bytes:
        """Switch ``index``'s signed LS10 report for the 32-byte ``nonce``.

        Raises:
            UsageError: ``nonce`` is not 32 bytes.
            DeviceError: NSCQ failed (its return code named) or the switch gave no report.
        """
        if len(nonce) != _NONCE_SIZE:
            raise UsageError(f"an NVSwitch nonce is {_NONCE_SIZE} bytes, not {len(nonce)}")
        label = self.labels[index]
        buffer = (ctypes.c_uint8 * _NONCE_SIZE).from_buffer_copy(nonce)
        with self._session() as session:
            rc = self._fn["nscq_session_set_input"](session, 0, ctypes.byref(buffer), _NONCE_SIZE)
            self._check(rc, f"setting the attestation nonce for switch {label}")

            def on_report(device: Any, rc: int, report: Any) -> tuple[str, int, int, bytes]:
                size = int(report.report_size)
                value = bytes(report.report)[: min(size, _REPORT_SIZE)] if rc >= 0 else b""
                return self._owner(device), rc, size, value

            path = f"/{label}/config/attestation_report".encode()
            return self._one(
                session, path, _REPORT_CALLBACK, on_report, label=label, what="attestation report"
            )

    def switch_certificate_chain(self, index: int) -> bytes:
        """Switch ``index``'s certificate chain as PEM, leaf first.

        Raises:
            DeviceError: NSCQ failed (its return code named), or the chain is not certificates.
        """
        label = self.labels[index]

        def on_cert(device: Any, rc: int, cert: Any) -> tuple[str, int, int, bytes]:
            size = int(cert.cert_chain_size)
            value = bytes(cert.cert_chain)[: min(size, _CHAIN_SIZE)] if rc >= 0 else b""
            return self._owner(device), rc, size, value

        with self._session() as session:
            path = f"/{label}/config/certificate".encode()
            chain = self._one(session, path, _CERT_CALLBACK, on_cert, label=label, what="certificate chain")
        return _pem_chain(chain, label)

    # -- the protected-PCIe pre-checks ----------------------------------------------------------

    def check_ready(self) -> None:
        """NVIDIA's ppcie-verifier switch pre-checks: every switch an LS10 in TNVL mode and locked.

        Raises:
            DeviceNotSupported: no switch, a switch that is not LS10, not in TNVL mode or not locked.
        """
        if not self.labels:
            raise DeviceNotSupported("NSCQ found no NVSwitch on this machine")
        for index, label in enumerate(self.labels):
            arch = self.archs.get(label, "not reported")
            if arch != "LS10":
                raise DeviceNotSupported(
                    f"NVSwitch {label} is {arch}: ccai attests LS10 (NVLink 4) switches",
                    index=index,
                    expected="LS10",
                    actual=arch,
                )
            status = self.tnvl_status.get(label)
            for bit, what in ((_TNVL_BIT, "in TNVL mode"), (_LOCK_BIT, "locked")):
                if status is None or not status & bit:
                    raise DeviceNotSupported(
                        f"NVSwitch {label} is not {what} (TNVL status {status}): the system is not "
                        "ready for protected-PCIe attestation",
                        index=index,
                        expected="TNVL status with bits 0 (TNVL) and 1 (locked) set",
                        actual=status,
                        hint="enable protected-PCIe mode and lock the switches through Fabric Manager",
                    )

    # -- NSCQ plumbing --------------------------------------------------------------------------

    @contextmanager
    def _session(self) -> Iterator[int]:
        with _SESSION_LOCK:
            result = self._fn["nscq_session_create"](_SESSION_CREATE_MOUNT_DEVICES)
            self._check(int(result.rc), "creating a session")
            try:
                yield result.session
            finally:
                self._fn["nscq_session_destroy"](result.session)

    def _observe(self, session: int, path: bytes, kind: Any, convert: Any) -> list[Any]:
        """Observe ``path``: ``convert(device, rc, value)`` of each callback, in callback order.

        Raises:
            DeviceError: NSCQ's return code is an error, or a callback's value could not be read
                (an exception cannot cross the C library, so it is recorded and raised here).
        """
        answers: list[Any] = []
        failures: list[str] = []

        def handler(device: Any, rc: int, value: Any, _user: Any) -> None:
            try:
                answers.append(convert(device, rc, value))
            except Exception as exc:  # re-raised below as a DeviceError
                failures.append(f"{type(exc).__name__}: {exc}")

        callback = kind(handler)  # kept alive until the call returns
        rc = self._fn["nscq_session_path_observe"](
            session, path, ctypes.cast(callback, ctypes.c_void_p), None, 0
        )
        self._check(rc, f"observing {path.decode()}")
        if failures:
            raise DeviceError(f"NSCQ's answer to {path.decode()} could not be read: {failures[0]}")
        return answers

    def _per_switch(self, session: int, path: bytes, what: str) -> list[tuple[str, int]]:
        def on_value(device: Any, rc: int, value: int) -> tuple[str, int, int]:
            return self._owner(device), rc, value

        out = []
        for owner, rc, value in self._observe(session, path, _INT8_CALLBACK, on_value):
            self._check(rc, f"reading the {what} of switch {owner}")
            out.append((owner, value))
        return out

    def _one(self, session: int, path: bytes, kind: Any, handler: Any, *, label: str, what: str) -> bytes:
        answers = [a for a in self._observe(session, path, kind, handler) if a[0] == label]
        if not answers:
            raise DeviceError(f"NSCQ gave no {what} for NVSwitch {label}")
        _, rc, size, value = answers[-1]
        self._check(rc, f"reading the {what} of switch {label}")
        limit = _REPORT_SIZE if kind is _REPORT_CALLBACK else _CHAIN_SIZE
        if not 0 < size <= limit:
            raise DeviceError(f"NSCQ returned a {what} of {size} bytes for switch {label} (at most {limit})")
        return bytes(value)

    def _label(self, uuid: bytes) -> str:
        raw = _Uuid.from_buffer_copy(uuid)
        label = _Label()
        rc = self._fn["nscq_uuid_to_label"](ctypes.byref(raw), ctypes.byref(label), 0)
        self._check(rc, "naming a switch UUID")
        return bytes(label.data).decode("ascii", "replace")

    def _owner(self, device: Any) -> str:
        """The label of the device a callback is about (exceptions cannot leave a callback)."""
        try:
            return self._label(bytes(device.contents.bytes)) if device else "?"
        except DeviceError:
            return "?"

    @staticmethod
    def _check(rc: int, doing: str) -> None:
        if rc < 0:
            raise DeviceError(f"NSCQ failed {doing}: {rc_name(rc)}", actual=rc_name(rc))
