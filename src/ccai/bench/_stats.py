"""Δ% between two arms with a 95 % confidence interval, and Student's t without scipy.

Method (docs/serving-benchmark.md): each repeat runs the two arms back to back (order alternating
AB, BA, AB, … so neither arm always runs second), which makes the repeats *pairs*. For a metric
``m`` and pairs ``(a_i, b_i)`` we take ``d_i = ln(a_i / b_i)``, a paired t interval on the mean of
``d`` with ``n − 1`` degrees of freedom, and map back: ``Δ% = 100 · (exp(d̄) − 1)`` with the interval
``100 · (exp(d̄ ± t · s/√n) − 1)``. The log scale makes the interval a ratio interval (it cannot cross
−100 %) and pairing removes drift that hits both arms of a pair alike. With fewer than two pairs
there is no interval.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Delta", "mean_interval", "paired_delta", "t_quantile"]


def _betacf(a: float, b: float, x: float) -> float:
    # Continued fraction of the regularised incomplete beta function (modified Lentz).
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    ln_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    front = math.exp(ln_front)
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def _t_cdf(t: float, df: float) -> float:
    x = df / (df + t * t)
    tail = 0.5 * _betainc(df / 2.0, 0.5, x)
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t distribution with ``df`` degrees of freedom.

    Args:
        p: Probability in (0, 1).
        df: Degrees of freedom (> 0; need not be an integer).

    Returns:
        ``t`` with ``P(T ≤ t) = p`` (bisection to 1e-12 on the CDF).

    Raises:
        ValueError: ``p`` outside (0, 1) or ``df`` ≤ 0.
    """
    if not 0.0 < p < 1.0 or df <= 0:
        raise ValueError("t_quantile needs 0 < p < 1 and df > 0")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while _t_cdf(hi, df) < p:
        hi *= 2.0
    for _ in range(200):
        mid = (lo + hi) / 2.0
        if _t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12:
            break
    return (lo + hi) / 2.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Delta:
    """Relative change of a metric, arm A against baseline B, in percent.

    Attributes:
        pct: Point estimate ``100 · (geometric mean of a_i/b_i − 1)``.
        low: Lower end of the 95 % interval, ``None`` with fewer than two pairs.
        high: Upper end of the 95 % interval.
        pairs: Number of (a, b) pairs used.
    """

    pct: float
    low: float | None
    high: float | None
    pairs: int

    def contains_zero(self) -> bool:
        """Whether the interval includes 0 % (no detectable difference).

        Returns:
            False when there is no interval.
        """
        return self.low is not None and self.high is not None and self.low <= 0.0 <= self.high


def paired_delta(a: Sequence[float], b: Sequence[float], *, confidence: float = 0.95) -> Delta | None:
    """Δ% of ``a`` against ``b`` with a paired t interval on the log ratio.

    Args:
        a: The metric of arm A, one value per repeat.
        b: The metric of the baseline arm, same repeats in the same order.
        confidence: Two-sided confidence level.

    Returns:
        The delta, or ``None`` when no pair has two finite positive values.

    Raises:
        ValueError: ``a`` and ``b`` differ in length.
    """
    if len(a) != len(b):
        raise ValueError("paired_delta needs one value per repeat in both arms")
    logs = [
        math.log(x / y)
        for x, y in zip(a, b, strict=True)
        if math.isfinite(x) and math.isfinite(y) and x > 0 and y > 0
    ]
    n = len(logs)
    if n == 0:
        return None
    mean = sum(logs) / n
    pct = 100.0 * math.expm1(mean)
    if n < 2:
        return Delta(pct=pct, low=None, high=None, pairs=n)
    sd = math.sqrt(sum((x - mean) ** 2 for x in logs) / (n - 1))
    half = t_quantile(0.5 + confidence / 2.0, n - 1) * sd / math.sqrt(n)
    return Delta(pct=pct, low=100.0 * math.expm1(mean - half), high=100.0 * math.expm1(mean + half), pairs=n)


def mean_interval(values: Sequence[float], *, confidence: float = 0.95) -> tuple[float, float]:
    """Mean and half-width of its t interval (half-width 0 for fewer than two finite values).

    Args:
        values: Repeated measurements of one metric.
        confidence: Two-sided confidence level.

    Returns:
        ``(mean, half_width)``; ``(nan, 0)`` for no finite values.
    """
    xs = [v for v in values if math.isfinite(v)]
    if not xs:
        return float("nan"), 0.0
    mean = sum(xs) / len(xs)
    if len(xs) < 2:
        return mean, 0.0
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1))
    return mean, t_quantile(0.5 + confidence / 2.0, len(xs) - 1) * sd / math.sqrt(len(xs))
