"""The sans-I/O core of EHBP: key configuration, server key, HPKE request contexts, response keys,
framing. The server middleware and the httpx transports are thin I/O shells around it.

Wire format (Tinfoil's ``encrypted-http-body-protocol`` SPEC.md; landscape.md §5):

* key configuration: one RFC 9458 §3.1 ``key_config`` (``key_id`` u8, ``kem_id`` u16, public key,
  ``cipher_suites`` length u16, then ``kdf_id`` u16 ‖ ``aead_id`` u16 pairs), big-endian;
* request: ``enc, ctx = SetupBaseS(pk, info="ehbp request")``; header ``Ehbp-Encapsulated-Key`` =
  lowercase hex of ``enc``; each frame is ``ctx.Seal(chunk, aad="")`` (the context counts frames);
* response: ``secret = ctx.Export("ehbp response", 32)``, ``nonce = random(32)``,
  ``prk = HKDF-Extract(salt=enc ‖ nonce, ikm=secret)``, ``key = Expand(prk, "key", 32)``,
  ``base = Expand(prk, "nonce", 12)``; frame *i* is AES-256-GCM under ``key`` with nonce
  ``base XOR i`` and empty AAD; header ``Ehbp-Response-Nonce`` = lowercase hex of ``nonce``;
* framing (both directions): ``LEN`` (u32 big-endian, ciphertext bytes) ‖ ``CIPHERTEXT``; ``LEN`` 0
  frames are skipped; the end of the HTTP body ends the message.
"""

from __future__ import annotations

import hmac
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from hashlib import sha256
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand
from pyhpke import AEADId, CipherSuite, KDFId, KEMId

from ccai.ehbp._errors import (
    AeadDecryptFailed,
    ChunkTooLarge,
    FramingTruncated,
    HpkeSetupFailed,
    InvalidEncapsulatedKey,
    InvalidKeyConfig,
    InvalidResponseNonce,
    SequenceOverflow,
    UnsupportedSuite,
)

__all__ = [
    "AEAD_AES_256_GCM",
    "ENCAPSULATED_KEY_HEADER",
    "FRAME_SIZE",
    "KDF_HKDF_SHA256",
    "KEM_X25519_HKDF_SHA256",
    "KEYS_MEDIA_TYPE",
    "KEYS_PATH",
    "KEY_CONFIG_PROBLEM_TYPE",
    "MAX_FRAME_LENGTH",
    "PROBLEM_MEDIA_TYPE",
    "RESPONSE_NONCE_HEADER",
    "FrameReader",
    "KeyConfig",
    "RequestOpener",
    "RequestSealer",
    "ResponseCipher",
    "ServerKey",
    "frame",
    "parse_encapsulated_key",
    "parse_response_nonce",
]

ENCAPSULATED_KEY_HEADER = "Ehbp-Encapsulated-Key"
RESPONSE_NONCE_HEADER = "Ehbp-Response-Nonce"
KEYS_PATH = "/.well-known/hpke-keys"
KEYS_MEDIA_TYPE = "application/ohttp-keys"
PROBLEM_MEDIA_TYPE = "application/problem+json"
KEY_CONFIG_PROBLEM_TYPE = "urn:ietf:params:ehbp:error:key-config"

KEM_X25519_HKDF_SHA256 = 0x0020
KDF_HKDF_SHA256 = 0x0001
AEAD_AES_256_GCM = 0x0002

#: Plaintext bytes per request frame the transports seal (Tinfoil's Python transport uses the same).
FRAME_SIZE = 64 * 1024
#: Largest frame (ciphertext bytes) a receiver accepts; a larger length prefix is refused before
#: anything is allocated (the conformance suite's receive limit).
MAX_FRAME_LENGTH = 64 * 1024 * 1024

_REQUEST_INFO = b"ehbp request"
_EXPORT_LABEL = b"ehbp response"
_SECRET_LENGTH = 32  # Nk of AES-256-GCM
_NONCE_LENGTH = 12  # Nn of AES-256-GCM
_RESPONSE_NONCE_LENGTH = 32  # max(Nn, Nk), RFC 9458 §4.4
_ENC_LENGTH = 32  # Nenc of DHKEM(X25519)
_MAX_SEQUENCE = 1 << 64
_TAG_LENGTH = 16
_LENGTH = struct.Struct(">I")


def _suite() -> CipherSuite:
    return CipherSuite.new(KEMId.DHKEM_X25519_HKDF_SHA256, KDFId.HKDF_SHA256, AEADId.AES256_GCM)


_SUITE = _suite()


def frame(ciphertext: bytes) -> bytes:
    """``LEN`` (u32 big-endian) ‖ ``ciphertext``."""
    return _LENGTH.pack(len(ciphertext)) + ciphertext


# -- key configuration ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyConfig:
    """One RFC 9458 §3.1 key configuration, as served at ``/.well-known/hpke-keys``.

    Attributes:
        key_id: The key identifier (0 … 255; EHBP servers use 0).
        kem_id: The KEM (``0x0020``, DHKEM(X25519, HKDF-SHA256)).
        public_key: The 32-byte X25519 public key.
        suites: ``(kdf_id, aead_id)`` pairs; EHBP uses the first, ``(0x0001, 0x0002)``.
    """

    key_id: int
    kem_id: int
    public_key: bytes
    suites: tuple[tuple[int, int], ...]

    @classmethod
    def for_public_key(cls, public_key: bytes, *, key_id: int = 0) -> KeyConfig:
        """The EHBP key configuration of an X25519 public key.

        Raises:
            InvalidKeyConfig: the key is not 32 bytes, or ``key_id`` is not a byte.
        """
        config = cls(
            key_id=key_id,
            kem_id=KEM_X25519_HKDF_SHA256,
            public_key=bytes(public_key),
            suites=((KDF_HKDF_SHA256, AEAD_AES_256_GCM),),
        )
        config.validate()
        return config

    def validate(self) -> None:
        """Check the configuration is one EHBP can use.

        Raises:
            InvalidKeyConfig: bad key id, public key length or an empty suite list.
            UnsupportedSuite: a KEM, KDF or AEAD other than EHBP's.
        """
        if not 0 <= self.key_id <= 0xFF:
            raise InvalidKeyConfig(f"key_id {self.key_id} is not a byte")
        if self.kem_id != KEM_X25519_HKDF_SHA256:
            raise UnsupportedSuite(f"KEM 0x{self.kem_id:04x} (EHBP uses 0x0020, X25519)")
        if len(self.public_key) != _ENC_LENGTH:
            raise InvalidKeyConfig(f"public key is {len(self.public_key)} bytes, expected 32")
        if not self.suites:
            raise InvalidKeyConfig("no cipher suites")
        kdf, aead = self.suites[0]
        if (kdf, aead) != (KDF_HKDF_SHA256, AEAD_AES_256_GCM):
            raise UnsupportedSuite(
                f"KDF 0x{kdf:04x} / AEAD 0x{aead:04x} (EHBP uses HKDF-SHA256 0x0001 / AES-256-GCM 0x0002)"
            )

    def encode(self) -> bytes:
        """The wire bytes (41 for one suite), without RFC 9458 §3.2's length prefix, as EHBP serves it."""
        out = struct.pack(">BH", self.key_id, self.kem_id) + self.public_key
        out += struct.pack(">H", 4 * len(self.suites))
        for kdf, aead in self.suites:
            out += struct.pack(">HH", kdf, aead)
        return out

    @classmethod
    def decode(cls, data: bytes) -> KeyConfig:
        """Parse the first key configuration of ``data`` (later ones, if any, are ignored, as SPEC §3.2 says).

        Raises:
            InvalidKeyConfig: truncated, no suites, a suite list not a multiple of 4, a bad key.
            UnsupportedSuite: a KEM, KDF or AEAD other than EHBP's.
        """
        data = bytes(data)
        if len(data) < 3:
            raise InvalidKeyConfig("truncated before the KEM id")
        key_id, kem_id = struct.unpack_from(">BH", data, 0)
        if kem_id != KEM_X25519_HKDF_SHA256:
            # The public key's length depends on the KEM; an unknown KEM cannot be parsed further.
            raise UnsupportedSuite(f"KEM 0x{kem_id:04x} (EHBP uses 0x0020, X25519)")
        offset = 3 + _ENC_LENGTH
        if len(data) < offset + 2:
            raise InvalidKeyConfig("truncated inside the public key or the suite length")
        public_key = data[3:offset]
        (suites_length,) = struct.unpack_from(">H", data, offset)
        offset += 2
        if suites_length == 0 or suites_length % 4:
            raise InvalidKeyConfig(f"cipher-suite length {suites_length} is not a positive multiple of 4")
        if len(data) < offset + suites_length:
            raise InvalidKeyConfig("truncated inside the cipher suites")
        suites = tuple(struct.unpack_from(">HH", data, offset + i) for i in range(0, suites_length, 4))
        config = cls(key_id=key_id, kem_id=kem_id, public_key=public_key, suites=suites)
        config.validate()
        try:
            _SUITE.kem.deserialize_public_key(public_key)
        except Exception as exc:  # pyhpke raises library-specific errors for a bad point
            raise InvalidKeyConfig("the public key is not an X25519 key") from exc
        return config


# -- server key -------------------------------------------------------------------------------


class ServerKey:
    """The server's X25519 HPKE private key (never shown by ``repr``).

    Build it with :meth:`generate` or :meth:`from_private_bytes`.
    """

    __slots__ = ("_key_id", "_private", "_public")

    def __init__(self, private: X25519PrivateKey, *, key_id: int = 0) -> None:
        if not 0 <= key_id <= 0xFF:
            raise InvalidKeyConfig(f"key_id {key_id} is not a byte")
        raw = private.private_bytes_raw()
        self._private = _SUITE.kem.deserialize_private_key(raw)
        self._public = private.public_key().public_bytes_raw()
        self._key_id = key_id

    @classmethod
    def generate(cls, *, key_id: int = 0) -> ServerKey:
        """A fresh random key."""
        return cls(X25519PrivateKey.generate(), key_id=key_id)

    @classmethod
    def from_private_bytes(cls, data: bytes, *, key_id: int = 0) -> ServerKey:
        """The key with these 32 raw private bytes.

        Raises:
            InvalidKeyConfig: not 32 bytes.
        """
        if len(data) != 32:
            raise InvalidKeyConfig(f"an X25519 private key is 32 bytes, not {len(data)}")
        return cls(X25519PrivateKey.from_private_bytes(bytes(data)), key_id=key_id)

    @property
    def public_key(self) -> bytes:
        """The 32 raw bytes of the public key."""
        return self._public

    @property
    def key_id(self) -> int:
        """The key configuration's ``key_id``."""
        return self._key_id

    def private_bytes(self) -> bytes:
        """The 32 raw private bytes (secret: for sealing the key at rest, never for logs)."""
        return bytes(self._private.to_private_bytes())

    def key_config(self) -> KeyConfig:
        """The key configuration clients fetch from ``/.well-known/hpke-keys``."""
        return KeyConfig.for_public_key(self._public, key_id=self._key_id)

    def open_request(self, enc: bytes) -> RequestOpener:
        """The HPKE receiver context for one request's encapsulated key.

        Raises:
            HpkeSetupFailed: decapsulation failed (for example a low-order point).
        """
        try:
            context = _SUITE.create_recipient_context(enc, self._private, info=_REQUEST_INFO)
            secret = bytes(context.export(_EXPORT_LABEL, _SECRET_LENGTH))
        except Exception as exc:  # pyhpke and cryptography raise several types for a bad enc
            raise HpkeSetupFailed("could not set up the request context") from exc
        return RequestOpener(context, enc=enc, secret=secret)

    def __repr__(self) -> str:
        return f"ServerKey(key_id={self._key_id}, public_key={self._public.hex()})"


# -- request contexts -------------------------------------------------------------------------


class RequestSealer:
    """The client side of one exchange: seals request frames, then opens the response.

    Attributes:
        enc: The encapsulated key (sent as ``Ehbp-Encapsulated-Key``).
    """

    __slots__ = ("_context", "_secret", "enc")

    def __init__(self, public_key: bytes) -> None:
        try:
            peer = _SUITE.kem.deserialize_public_key(bytes(public_key))
            enc, self._context = _SUITE.create_sender_context(peer, info=_REQUEST_INFO)
            self._secret = bytes(self._context.export(_EXPORT_LABEL, _SECRET_LENGTH))
        except Exception as exc:
            raise HpkeSetupFailed("could not set up the request context") from exc
        self.enc = bytes(enc)

    def seal(self, plaintext: bytes) -> bytes:
        """One framed request frame (``LEN ‖ ciphertext``)."""
        try:
            return frame(bytes(self._context.seal(plaintext, b"")))
        except Exception as exc:  # pyhpke raises on sequence exhaustion too
            raise HpkeSetupFailed("could not seal a request frame") from exc

    def response_cipher(self, response_nonce: bytes) -> ResponseCipher:
        """The cipher that opens this exchange's response."""
        return ResponseCipher(secret=self._secret, enc=self.enc, response_nonce=response_nonce)


class RequestOpener:
    """The server side of one exchange: opens request frames, seals the response."""

    __slots__ = ("_context", "_enc", "_secret")

    def __init__(self, context: Any, *, enc: bytes, secret: bytes) -> None:
        self._context = context
        self._enc = enc
        self._secret = secret

    def open(self, ciphertext: bytes) -> bytes:
        """The plaintext of the next request frame.

        Raises:
            AeadDecryptFailed: the frame does not authenticate.
        """
        try:
            return bytes(self._context.open(ciphertext, b""))
        except Exception as exc:  # pyhpke's OpenError, or a sequence overflow
            raise AeadDecryptFailed("a request frame did not authenticate") from exc

    def response_cipher(self, response_nonce: bytes) -> ResponseCipher:
        """The cipher that seals this exchange's response under ``response_nonce``."""
        return ResponseCipher(secret=self._secret, enc=self._enc, response_nonce=response_nonce)


class ResponseCipher:
    """AES-256-GCM over response frames with the OHTTP-style derived key (SPEC §4.4).

    One instance seals (server) or opens (client) one response body, frame by frame in order.
    """

    __slots__ = ("_aead", "_base", "_sequence")

    def __init__(self, *, secret: bytes, enc: bytes, response_nonce: bytes) -> None:
        if len(response_nonce) != _RESPONSE_NONCE_LENGTH:
            raise InvalidResponseNonce(f"response nonce is {len(response_nonce)} bytes, expected 32")
        try:
            # HKDF-Extract(salt, ikm) is HMAC-SHA256 keyed with the salt (RFC 5869 §2.2).
            prk = hmac.new(enc + response_nonce, secret, sha256).digest()
            key = HKDFExpand(hashes.SHA256(), _SECRET_LENGTH, b"key").derive(prk)
            base = HKDFExpand(hashes.SHA256(), _NONCE_LENGTH, b"nonce").derive(prk)
        except Exception as exc:
            raise HpkeSetupFailed("could not derive the response keys") from exc
        self._aead = AESGCM(key)
        self._base = int.from_bytes(base, "big")
        self._sequence = 0

    def _next_nonce(self) -> bytes:
        if self._sequence >= _MAX_SEQUENCE:
            raise SequenceOverflow("more than 2**64 response frames")
        nonce = (self._base ^ self._sequence).to_bytes(_NONCE_LENGTH, "big")
        self._sequence += 1
        return nonce

    def seal(self, plaintext: bytes) -> bytes:
        """One framed response frame."""
        return frame(self._aead.encrypt(self._next_nonce(), plaintext, None))

    def seal_all(self, plaintext: bytes, *, frame_size: int = FRAME_SIZE) -> bytes:
        """``plaintext`` as consecutive frames of at most ``frame_size`` plaintext bytes (none if empty)."""
        view = memoryview(plaintext)
        return b"".join(self.seal(bytes(view[i : i + frame_size])) for i in range(0, len(view), frame_size))

    def open(self, ciphertext: bytes) -> bytes:
        """The plaintext of the next response frame.

        Raises:
            AeadDecryptFailed: the frame does not authenticate.
        """
        if len(ciphertext) < _TAG_LENGTH:
            raise AeadDecryptFailed("a response frame is shorter than its tag")
        try:
            return self._aead.decrypt(self._next_nonce(), ciphertext, None)
        except InvalidTag:
            raise AeadDecryptFailed("a response frame did not authenticate") from None


# -- framing ----------------------------------------------------------------------------------


class FrameReader:
    """Splits a body arriving in arbitrary pieces into frames (SPEC §4.3).

    A length prefix above ``max_frame_length`` raises :class:`ChunkTooLarge` as soon as its four
    bytes are in, before the frame is buffered; the buffer never holds more than one frame plus the
    piece being fed. ``LEN`` 0 frames are skipped.
    """

    __slots__ = ("_buffer", "_max")

    def __init__(self, max_frame_length: int = MAX_FRAME_LENGTH) -> None:
        self._buffer = bytearray()
        self._max = max_frame_length

    def feed(self, data: bytes) -> Iterator[bytes]:
        """Add ``data``; yield the ciphertexts of the frames it completes (possibly none), in order,
        each before the next is parsed (so frames ahead of a bad length prefix still come out).

        Raises:
            ChunkTooLarge: a length prefix exceeds the limit.
        """
        buffer = self._buffer
        buffer += data
        while len(buffer) >= 4:
            (length,) = _LENGTH.unpack_from(buffer, 0)
            if length > self._max:
                raise ChunkTooLarge(f"frame of {length} bytes exceeds the limit of {self._max}")
            if len(buffer) - 4 < length:
                return
            ciphertext = bytes(buffer[4 : 4 + length])
            del buffer[: 4 + length]
            if length:
                yield ciphertext

    def finish(self) -> None:
        """Declare the end of the body.

        Raises:
            FramingTruncated: the body ended inside a length prefix or a frame.
        """
        if self._buffer:
            raise FramingTruncated(f"body ended with {len(self._buffer)} bytes of an incomplete frame")


# -- header values ----------------------------------------------------------------------------


def parse_encapsulated_key(values: list[str]) -> bytes:
    """The encapsulated key from the ``Ehbp-Encapsulated-Key`` header values.

    Raises:
        InvalidEncapsulatedKey: repeated, not lowercase-or-uppercase hex, or not 32 bytes.
    """
    if len(values) != 1:
        raise InvalidEncapsulatedKey(f"{len(values)} {ENCAPSULATED_KEY_HEADER} headers")
    return _hex32(values[0], InvalidEncapsulatedKey, "encapsulated key")


def parse_response_nonce(value: str) -> bytes:
    """The 32-byte response nonce from one ``Ehbp-Response-Nonce`` value.

    Raises:
        InvalidResponseNonce: not hex or not 32 bytes.
    """
    return _hex32(value, InvalidResponseNonce, "response nonce")


def _hex32(value: str, error: type[InvalidEncapsulatedKey | InvalidResponseNonce], what: str) -> bytes:
    text = value.strip()
    if len(text) != 64:
        raise error(f"{what} is {len(text)} hex characters, expected 64")
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise error(f"{what} is not hex") from None
    if len(raw) != 32:  # fromhex skips whitespace between bytes
        raise error(f"{what} is not 64 hex digits")
    return raw
