"""Δ% and its confidence interval: t quantiles against table values, paired log-ratio intervals."""

from __future__ import annotations

import math

import pytest

from ccai.bench._stats import mean_interval, paired_delta, t_quantile


@pytest.mark.parametrize(
    ("p", "df", "expected"),
    [
        (0.975, 1, 12.7062),
        (0.975, 2, 4.3027),
        (0.975, 4, 2.7764),
        (0.975, 10, 2.2281),
        (0.95, 30, 1.6973),
        (0.975, 1e7, 1.95996),
        (0.025, 3, -3.1824),
        (0.5, 5, 0.0),
    ],
)
def test_t_quantile_table(p: float, df: float, expected: float) -> None:
    assert t_quantile(p, df) == pytest.approx(expected, abs=2e-4)


def test_t_quantile_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        t_quantile(1.0, 3)
    with pytest.raises(ValueError):
        t_quantile(0.5, 0)


def test_paired_delta_hand_computed() -> None:
    # ratios 1.1, 0.9, 1.0 -> logs l = [ln 1.1, ln 0.9, 0]
    a, b = [110.0, 90.0, 50.0], [100.0, 100.0, 50.0]
    d = paired_delta(a, b)
    assert d is not None
    logs = [math.log(1.1), math.log(0.9), 0.0]
    mean = sum(logs) / 3
    sd = math.sqrt(sum((x - mean) ** 2 for x in logs) / 2)
    half = 4.302653 * sd / math.sqrt(3)
    assert d.pct == pytest.approx(100 * math.expm1(mean))
    assert d.low == pytest.approx(100 * math.expm1(mean - half), rel=1e-5)
    assert d.high == pytest.approx(100 * math.expm1(mean + half), rel=1e-5)
    assert d.pairs == 3 and d.contains_zero()


def test_paired_delta_consistent_shift_excludes_zero() -> None:
    d = paired_delta([95.0, 96.0, 94.0, 95.0], [100.0, 101.0, 99.0, 100.0])
    assert d is not None and d.high is not None and d.high < 0 and not d.contains_zero()
    assert d.pct == pytest.approx(-5.0, abs=0.1)


def test_paired_delta_edge_cases() -> None:
    assert paired_delta([], []) is None
    assert paired_delta([float("nan")], [1.0]) is None
    one = paired_delta([2.0, float("nan")], [1.0, 1.0])
    assert one is not None and one.pct == pytest.approx(100.0) and one.low is None and not one.contains_zero()
    with pytest.raises(ValueError):
        paired_delta([1.0], [1.0, 2.0])


def test_mean_interval() -> None:
    mean, half = mean_interval([1.0, 2.0, 3.0])
    assert mean == 2.0 and half == pytest.approx(4.302653 * 1.0 / math.sqrt(3), rel=1e-5)
    assert mean_interval([5.0]) == (5.0, 0.0)
    m, h = mean_interval([])
    assert math.isnan(m) and h == 0.0
