"""What the virtual CC GPU and the virtual CPU TEE of :mod:`ccai.virtual` share.

Both keep a small JSON state file under ``$CCAI_HOME`` and a test PKI derived from a seed. The
common parts live here:

* private files written atomically with mode 0600 (:func:`write_private_file`);
* versioned JSON state and cache files (:func:`read_state`, :func:`dump_state`, :func:`read_cache`);
* seed-derived key material (:class:`SeededKeys`): HKDF-SHA-384 bytes, EC private keys and
  certificate serial numbers, byte-identical for a seed;
* the pieces of certificate building both test PKIs use (:func:`der_tlv`, :func:`key_usage`).

Nothing here is trusted by a verifier; it only builds the virtual hardware.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ccai._files import atomic_write, private_dir
from ccai._json import load_json
from ccai.errors import UsageError

__all__ = [
    "SeededKeys",
    "der_tlv",
    "dump_state",
    "key_usage",
    "read_cache",
    "read_state",
    "write_private_file",
]

_T = TypeVar("_T")

# Group orders of the curves the test PKIs use (SEC 2 §2.4.2, §2.5.1).
_N_P256 = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_N_P384 = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973
_CURVE_ORDERS = {"secp256r1": _N_P256, "secp384r1": _N_P384}


def write_private_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, mode 0600, in a 0700 folder (:mod:`ccai._files`)."""
    private_dir(path.parent)
    atomic_write(path, data, mode=0o600)


def dump_state(fields: dict[str, Any]) -> bytes:
    """A state file's bytes: indented JSON with sorted keys and a final newline."""
    return (json.dumps(fields, indent=2, sort_keys=True) + "\n").encode()


def read_state(
    path: Path, *, state_format: str, what: str, hint: str, build: Callable[[dict[str, Any]], _T]
) -> _T | None:
    """Load a versioned JSON state file.

    Args:
        path: The state file.
        state_format: The ``format`` value the file must carry.
        what: What the state describes (``"virtual GPU"``), for the error.
        hint: How to recreate the file, for the error.
        build: Turns the JSON object into the state; raises ``ValueError``, ``KeyError``,
            ``TypeError`` or :class:`UsageError` on bad content.

    Returns:
        The state, or ``None`` when the file does not exist.

    Raises:
        UsageError: the file exists but is damaged (not JSON, wrong format, bad values).
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        data = load_json(raw, what="content", error=UsageError)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        if data.get("format") != state_format:
            raise ValueError(f"format {data.get('format')!r}")
        return build(data)
    except (ValueError, KeyError, TypeError, UsageError) as exc:
        raise UsageError(f"{what} state file {path} is damaged: {exc}", hint=hint) from None


def read_cache(path: Path | None, *, cache_format: str, seed_id: str) -> dict[str, Any] | None:
    """The JSON object of a test-PKI cache file, or ``None`` when there is no usable one.

    A cache is only a cache: a missing, unreadable or foreign file (another format or seed) is
    ignored and its content regenerated.
    """
    if path is None or not path.is_file():
        return None
    try:
        data = load_json(path.read_bytes(), what="cache", error=UsageError)
    except (OSError, UsageError):
        return None
    if not isinstance(data, dict) or data.get("format") != cache_format or data.get("seed_id") != seed_id:
        return None
    return data


class SeededKeys:
    """Key material derived from a secret seed: the same seed always gives the same bytes.

    Args:
        seed: The secret seed.
        salt: HKDF salt naming the purpose (``b"ccai virtual gpu v1"``); different salts give
            unrelated material from one seed.
    """

    def __init__(self, seed: bytes, *, salt: bytes) -> None:
        self._seed = bytes(seed)
        self._salt = salt

    def derive_bytes(self, label: str, length: int = 48) -> bytes:
        """HKDF-SHA-384 output for ``label`` (key material, serials, golden values)."""
        return HKDF(algorithm=hashes.SHA384(), length=length, salt=self._salt, info=label.encode()).derive(
            self._seed
        )

    def derive_ec_key(self, label: str, curve: ec.EllipticCurve) -> ec.EllipticCurvePrivateKey:
        """The EC private key for ``label`` on ``curve`` (P-256 or P-384), reduced into [1, n-1].

        Raises:
            UsageError: another curve.
        """
        order = _CURVE_ORDERS.get(curve.name)
        if order is None:
            raise UsageError(f"the test PKI derives P-256 and P-384 keys only, not {curve.name}")
        scalar = int.from_bytes(self.derive_bytes("key:" + label, 64), "big") % (order - 1) + 1
        return ec.derive_private_key(scalar, curve)

    def _serial(self, label: str, length: int = 16) -> int:
        raw = bytearray(self.derive_bytes("serial:" + label, length))
        raw[0] = (raw[0] & 0x3F) | 0x40  # positive, full length (same shape as the vendors' serials)
        return int.from_bytes(raw, "big")


def der_tlv(tag: int, content: bytes) -> bytes:
    """One DER TLV (definite length) — framing only, for the vendor extensions the test PKIs build."""
    n = len(content)
    if n < 0x80:
        length = bytes([n])
    else:
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(raw)]) + raw
    return bytes([tag]) + length + content


def key_usage(*, ca: bool, crl_sign: bool = True) -> x509.KeyUsage:
    """KeyUsage of a test-PKI certificate: CAs sign certificates (and CRLs), leaves sign data."""
    return x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca and crl_sign,
        encipher_only=False,
        decipher_only=False,
    )
