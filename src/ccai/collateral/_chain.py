"""A chain of collateral sources tried in order: cache → bundle → directory → network."""

from __future__ import annotations

from collections.abc import Iterable

from cryptography import x509

from ccai.collateral._types import CollateralSource
from ccai.errors import CollateralUnavailable

__all__ = ["SourceChain"]


def _reason(exc: CollateralUnavailable) -> str:
    """One source's reason, with its detail (the URL asked, a nested chain's reasons) kept."""
    if exc.actual is None or str(exc.actual) in exc.message:
        return exc.message
    return f"{exc.message} ({exc.actual})"


class SourceChain:
    """Asks each source in turn; the first answer wins.

    Only :class:`CollateralUnavailable` moves on to the next source; any other error (a bug, a
    usage error) propagates. When every source fails, the error lists what each one said.

    Args:
        sources: The sources, in the order to try them.
    """

    def __init__(self, sources: Iterable[CollateralSource]) -> None:
        self.sources = tuple(sources)

    def __repr__(self) -> str:
        return f"SourceChain({list(self.sources)!r})"

    def rim(self, rim_id: str) -> bytes:
        """The RIM from the first source that has it.

        Raises:
            CollateralUnavailable: no source has it (the message lists each source's reason).
        """
        reasons: list[str] = []
        for source in self.sources:
            try:
                return source.rim(rim_id)
            except CollateralUnavailable as exc:
                reasons.append(_reason(exc))
        raise CollateralUnavailable(
            f"RIM {rim_id} is not available from any source",
            actual="; ".join(reasons) or "no sources configured",
            hint=(
                "supply it from a RIM directory, an offline collateral bundle (ccai collateral fetch, "
                "ccai attest --with-collateral), or network access"
            ),
        )

    def ocsp(self, cert: x509.Certificate, issuer: x509.Certificate, *, nonce: bytes | None) -> bytes:
        """An OCSP response for ``cert`` from the first source that has one.

        Raises:
            CollateralUnavailable: no source has one (the message lists each source's reason).
        """
        reasons: list[str] = []
        for source in self.sources:
            try:
                return source.ocsp(cert, issuer, nonce=nonce)
            except CollateralUnavailable as exc:
                reasons.append(_reason(exc))
        raise CollateralUnavailable(
            f"OCSP response for {cert.subject.rfc4514_string()} is not available",
            actual="; ".join(reasons) or "no sources configured",
            hint="go online, or verify with a fresh collateral bundle (ccai collateral fetch)",
        )
