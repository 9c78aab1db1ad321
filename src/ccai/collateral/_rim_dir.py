"""A directory of RIMs named ``<id>.xml`` — NVAT's filesystem RIM store layout."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography import x509

from ccai._files import atomic_write
from ccai.collateral._chain import not_served
from ccai.collateral._rim_service import check_rim_id
from ccai.errors import CollateralUnavailable

__all__ = ["RimDirectory"]


class RimDirectory:
    """Reads (and writes) RIM XML files ``<path>/<rim id>.xml``.

    Implements the ``rim`` half of :class:`~ccai.collateral.CollateralSource`; ``ocsp`` raises
    :class:`CollateralUnavailable`.

    Args:
        path: The directory.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RimDirectory({str(self.path)!r})"

    def _file(self, rim_id: str) -> Path:
        return self.path / f"{check_rim_id(rim_id)}.xml"

    def rim(self, rim_id: str) -> bytes:
        """The RIM XML stored for ``rim_id``.

        Raises:
            UsageError: ``rim_id`` is not a valid RIM id.
            CollateralUnavailable: no such file, or it cannot be read.
        """
        file = self._file(rim_id)
        try:
            return file.read_bytes()
        except FileNotFoundError:
            raise CollateralUnavailable(
                f"RIM {rim_id} not in directory {self.path}", actual=str(file)
            ) from None
        except OSError as exc:
            raise CollateralUnavailable(f"RIM {rim_id}: cannot read {file}: {exc.strerror}") from None

    def store(self, rim_id: str, xml: bytes) -> Path:
        """Write ``xml`` as ``<rim id>.xml`` atomically (mode 0644: a RIM is a public, signed
        document; a symlink at the name is replaced, never followed) and return its path."""
        file = self._file(rim_id)
        self.path.mkdir(parents=True, exist_ok=True)
        return atomic_write(file, xml, mode=0o644)

    def ids(self) -> list[str]:
        """The RIM ids present in the directory, sorted."""
        if not self.path.is_dir():
            return []
        return sorted(p.stem for p in self.path.glob("*.xml") if not p.name.startswith("."))

    def ocsp(self, cert: x509.Certificate, issuer: x509.Certificate, *, nonce: bytes | None) -> bytes:
        """A RIM directory holds no OCSP responses.

        Raises:
            CollateralUnavailable: always.
        """
        raise not_served("OCSP responses are not available from a RIM directory")
