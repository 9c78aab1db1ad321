"""Prometheus metrics of one app (its own registry, so several apps can live in one process)."""

from __future__ import annotations

from collections.abc import Callable

from cryptography import x509
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from ccai.collateral import CollateralSource

__all__ = ["CONTENT_TYPE_LATEST", "MeteredSource", "Metrics"]

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """The service's counters and histograms.

    * ``ccai_requests_total{endpoint,status}`` — HTTP requests by route and status code;
    * ``ccai_request_seconds{endpoint}`` — request latency;
    * ``ccai_verdicts_total{endpoint,result}`` — appraisals by verdict (``pass``/``fail``);
    * ``ccai_collateral_requests_total{kind,outcome}`` — GPU collateral lookups: ``hit`` (served
      from the shared cache or local collateral), ``fetched`` (went to the origin), ``error``.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "ccai_requests", "HTTP requests", ["endpoint", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "ccai_request_seconds", "Request latency", ["endpoint"], buckets=_BUCKETS, registry=self.registry
        )
        self.verdicts = Counter(
            "ccai_verdicts", "Appraisal verdicts", ["endpoint", "result"], registry=self.registry
        )
        self.collateral = Counter(
            "ccai_collateral_requests", "GPU collateral lookups", ["kind", "outcome"], registry=self.registry
        )

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return bytes(generate_latest(self.registry))


class MeteredSource:
    """Counts lookups of a collateral source: ``inner`` is the cached chain, ``origin_calls`` is
    incremented by the origin wrapper; hits are lookups that never reached the origin."""

    def __init__(self, inner: CollateralSource, metrics: Metrics, *, origin: bool) -> None:
        self.inner = inner
        self.metrics = metrics
        self.origin = origin

    def __repr__(self) -> str:
        return f"MeteredSource({self.inner!r})"

    def _count(self, kind: str, call: Callable[[], bytes]) -> bytes:
        try:
            value = call()
        except Exception:
            if self.origin:
                self.metrics.collateral.labels(kind, "error").inc()
            raise
        self.metrics.collateral.labels(kind, "fetched" if self.origin else "lookup").inc()
        return value

    def rim(self, rim_id: str) -> bytes:
        """A RIM, counted."""
        return self._count("rim", lambda: self.inner.rim(rim_id))

    def ocsp(self, cert: x509.Certificate, issuer: x509.Certificate, *, nonce: bytes | None) -> bytes:
        """An OCSP response, counted."""
        return self._count("ocsp", lambda: self.inner.ocsp(cert, issuer, nonce=nonce))
