"""The offline collateral bundle: one versioned JSON file with everything a verifier fetches.

Layout (version 1)::

    {
      "version": 1,
      "created_at": "2025-06-01T12:00:00+00:00",
      "gpu": {
        "rims": {"NV_GPU_DRIVER_GH100_550.144.03": "<base64 RIM XML>", ...},
        "ocsp": {"<issuer DN>#<serial hex>": {"response": "<base64 DER OCSPResponse>"}, ...},
        "ocsp_checked": true
      },
      "cpu": {}
    }

``cpu`` is reserved for Intel/AMD collateral (TCB info, QE identity, VCEK certificates, CRLs) and
is carried through unchanged. Every document inside is signed by its vendor, so the bundle itself
needs no signature: the verifier checks each RIM and OCSP response as if fetched online, and the
OCSP validity windows bound how long a bundle stays usable.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from pydantic import BaseModel, ConfigDict, ValidationError

from ccai._files import atomic_write
from ccai._json import load_json
from ccai._time import utcnow
from ccai.collateral._cache import DEFAULT_OCSP_TTL, ocsp_response_expiry
from ccai.collateral._types import GpuCollateral, ocsp_key
from ccai.errors import CollateralUnavailable, MalformedEvidence, UnsupportedEvidence, UsageError

__all__ = [
    "BUNDLE_VERSION",
    "BundleSource",
    "CollateralBundle",
    "dump_bundle",
    "load_bundle",
    "read_bundle",
    "write_bundle",
]

#: The bundle format version this code writes and reads.
BUNDLE_VERSION = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class CollateralBundle:
    """An offline collateral bundle.

    Attributes:
        gpu: RIMs and OCSP responses for GPU evidence.
        cpu: CPU TEE collateral (reserved; carried through as JSON).
        created_at: When the bundle was made.
    """

    gpu: GpuCollateral
    cpu: Mapping[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None


class _OcspEntry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    response: str


class _GpuSection(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    rims: dict[str, str] = {}
    ocsp: dict[str, _OcspEntry] = {}
    ocsp_checked: bool = True


class _BundleFile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int
    created_at: datetime | None = None
    gpu: _GpuSection = _GpuSection()
    cpu: dict[str, Any] = {}


def dump_bundle(bundle: CollateralBundle) -> bytes:
    """Serialise a bundle to its JSON file format (UTF-8 bytes)."""
    document = {
        "version": BUNDLE_VERSION,
        "created_at": bundle.created_at.isoformat() if bundle.created_at else None,
        "gpu": {
            "rims": {
                rim_id: base64.b64encode(xml).decode() for rim_id, xml in sorted(bundle.gpu.rims.items())
            },
            "ocsp": {
                key: {"response": base64.b64encode(der).decode()}
                for key, der in sorted(bundle.gpu.ocsp.items())
            },
            "ocsp_checked": bundle.gpu.ocsp_checked,
        },
        "cpu": dict(bundle.cpu),
    }
    return (json.dumps(document, indent=2) + "\n").encode()


def _b64(value: str, *, what: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedEvidence(f"collateral bundle: {what} is not valid base64") from None


def load_bundle(data: bytes) -> CollateralBundle:
    """Parse a collateral bundle file.

    Raises:
        MalformedEvidence: not JSON, wrong shape, or bad base64.
        UnsupportedEvidence: a bundle version this ccai does not read.
    """
    raw = load_json(data, what="collateral bundle")
    if not isinstance(raw, dict) or "version" not in raw:
        raise MalformedEvidence("collateral bundle: expected a JSON object with a 'version' field")
    version = raw["version"]
    if not isinstance(version, int) or isinstance(version, bool):
        raise MalformedEvidence("collateral bundle: 'version' must be an integer", actual=repr(version))
    if version != BUNDLE_VERSION:
        raise UnsupportedEvidence(
            "collateral bundle version not supported",
            expected=BUNDLE_VERSION,
            actual=version,
            hint="re-create the bundle with this ccai (ccai collateral fetch)",
        )
    try:
        parsed = _BundleFile.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise MalformedEvidence(f"collateral bundle: {where}: {first['msg']}") from None
    if parsed.created_at is not None and parsed.created_at.tzinfo is None:
        raise MalformedEvidence("collateral bundle: created_at must carry a timezone")
    rims = {rim_id: _b64(text, what=f"RIM {rim_id}") for rim_id, text in parsed.gpu.rims.items()}
    responses = {
        key: _b64(entry.response, what=f"OCSP response {key}") for key, entry in parsed.gpu.ocsp.items()
    }
    return CollateralBundle(
        gpu=GpuCollateral(rims=rims, ocsp=responses, ocsp_checked=parsed.gpu.ocsp_checked),
        cpu=parsed.cpu,
        created_at=parsed.created_at,
    )


def read_bundle(path: str | os.PathLike[str]) -> CollateralBundle:
    """Read and parse a bundle file.

    Raises:
        UsageError: the file cannot be read.
        MalformedEvidence: see :func:`load_bundle`.
        UnsupportedEvidence: see :func:`load_bundle`.
    """
    file = Path(path)
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read collateral bundle {file}: {exc.strerror}") from None
    return load_bundle(data)


def write_bundle(path: str | os.PathLike[str], bundle: CollateralBundle) -> Path:
    """Write a bundle file atomically and return its path.

    The bundle holds only public, vendor-signed documents, so it is written mode 0644 (through
    :func:`ccai._files.atomic_write`: a symlink at ``path`` is replaced, never followed).

    Raises:
        UsageError: the file cannot be written.
    """
    file = Path(path)
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        return atomic_write(file, dump_bundle(bundle), mode=0o644)
    except OSError as exc:
        raise UsageError(f"cannot write collateral bundle {file}: {exc.strerror}") from None


class BundleSource:
    """A :class:`~ccai.collateral.CollateralSource` answering from an offline bundle.

    OCSP responses past their ``nextUpdate`` are not served, so a :class:`SourceChain` moves on to
    the next source (the network) instead of handing the verifier a stale status.

    Args:
        bundle: The bundle.
        clock: Returns the current time (injected for tests).
    """

    def __init__(self, bundle: CollateralBundle, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.bundle = bundle
        self._clock = clock

    def __repr__(self) -> str:
        return f"BundleSource({len(self.bundle.gpu.rims)} RIMs, {len(self.bundle.gpu.ocsp)} OCSP responses)"

    def rim(self, rim_id: str) -> bytes:
        """The RIM for ``rim_id`` from the bundle.

        Raises:
            CollateralUnavailable: the bundle does not hold it.
        """
        xml = self.bundle.gpu.rims.get(rim_id)
        if xml is None:
            raise CollateralUnavailable(f"RIM {rim_id} not in the collateral bundle")
        return xml

    def ocsp(self, cert: x509.Certificate, issuer: x509.Certificate, *, nonce: bytes | None) -> bytes:
        """The OCSP response for ``cert`` from the bundle (it cannot echo ``nonce``).

        Raises:
            CollateralUnavailable: the bundle does not hold one.
        """
        response = self.bundle.gpu.ocsp.get(ocsp_key(cert))
        if response is None:
            raise CollateralUnavailable(
                f"OCSP response for {cert.subject.rfc4514_string()} not in the collateral bundle"
            )
        now = self._clock()
        expires = ocsp_response_expiry(response, now=now, default_ttl=DEFAULT_OCSP_TTL)
        if expires is None or expires <= now:
            raise CollateralUnavailable(
                f"OCSP response for {cert.subject.rfc4514_string()} in the collateral bundle is stale",
                actual=f"nextUpdate {expires.isoformat()}" if expires else "unusable response",
                hint="refresh the bundle with ccai collateral fetch",
            )
        return response
