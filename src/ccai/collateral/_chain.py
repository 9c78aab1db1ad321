"""A chain of collateral sources tried in order: cache → bundle → directory → network."""

from __future__ import annotations

from collections.abc import Iterable

from cryptography import x509

from ccai.collateral._types import CollateralSource
from ccai.errors import CollateralUnavailable

__all__ = ["SourceChain", "not_served"]

# Attributes a chain's error carries (an Error is a plain object: no new public error class needed).
_REASONS = "_ccai_source_reasons"  # the reasons of every source below, flattened, each once
_NOT_SERVED = "_ccai_not_served"  # the source never serves this kind of collateral


def not_served(message: str) -> CollateralUnavailable:
    """The error of a source asked for collateral of a kind it never serves (an OCSP responder
    asked for a RIM). A chain leaves such a source out of the reasons it lists: it is no reason."""
    exc = CollateralUnavailable(message)
    setattr(exc, _NOT_SERVED, True)
    return exc


def _reasons(exc: CollateralUnavailable, subject: str) -> list[str]:
    """One source's reasons: a nested chain's (already flat), or the source's own, said once.

    The chain's message names what was asked for (``subject``), so a reason need not repeat it;
    the detail a source gives (the URL asked, the file looked for) is kept.
    """
    nested: tuple[str, ...] | None = getattr(exc, _REASONS, None)
    if nested is not None:
        return list(nested)
    if getattr(exc, _NOT_SERVED, False):
        return []
    message = exc.message.removeprefix(f"{subject} ")
    if exc.actual is None or str(exc.actual) in message:
        return [message]
    return [f"{message} ({exc.actual})"]


def _unavailable(message: str, reasons: list[str], *, configured: bool, hint: str) -> CollateralUnavailable:
    unique = tuple(dict.fromkeys(reasons))
    if unique:
        actual = "; ".join(unique)
    else:
        actual = "no configured source serves it" if configured else "no sources configured"
    exc = CollateralUnavailable(message, actual=actual, hint=hint)
    setattr(exc, _REASONS, unique)
    return exc


class SourceChain:
    """Asks each source in turn; the first answer wins.

    Only :class:`CollateralUnavailable` moves on to the next source; any other error (a bug, a
    usage error) propagates. When every source fails, the error says on one line what each source
    said, once: the reasons of a nested chain are spliced in, not repeated inside its own message,
    and a source that never serves that kind of collateral (:func:`not_served`) is left out.

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
            CollateralUnavailable: no source has it (``actual`` lists each source's reason once).
        """
        reasons: list[str] = []
        for source in self.sources:
            try:
                return source.rim(rim_id)
            except CollateralUnavailable as exc:
                reasons += _reasons(exc, f"RIM {rim_id}")
        raise _unavailable(
            f"RIM {rim_id} is not available from any source",
            reasons,
            configured=bool(self.sources),
            hint=(
                "supply it from a RIM directory, an offline collateral bundle (ccai collateral fetch, "
                "ccai attest --with-collateral), or network access"
            ),
        )

    def ocsp(self, cert: x509.Certificate, issuer: x509.Certificate, *, nonce: bytes | None) -> bytes:
        """An OCSP response for ``cert`` from the first source that has one.

        Raises:
            CollateralUnavailable: no source has one (``actual`` lists each source's reason once).
        """
        subject = f"OCSP response for {cert.subject.rfc4514_string()}"
        reasons: list[str] = []
        for source in self.sources:
            try:
                return source.ocsp(cert, issuer, nonce=nonce)
            except CollateralUnavailable as exc:
                reasons += _reasons(exc, subject)
        raise _unavailable(
            f"{subject} is not available",
            reasons,
            configured=bool(self.sources),
            hint="go online, or verify with a fresh collateral bundle (ccai collateral fetch)",
        )
