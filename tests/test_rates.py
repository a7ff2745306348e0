"""Failure rates per atom·time (legato.stats.rates): exact intervals and rate ratios, checked
against their definitions and by coverage over simulated Poisson counts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from legato.errors import LegatoError
from legato.stats.rates import exposure, poisson_rate, rate_ratio


def test_exposure_and_zero_count_bound():
    assert exposure(128, [1.0, 2.5]) == pytest.approx(448.0)
    r = poisson_rate(0, 10.0)
    assert r.value == 0.0 and r.lo == 0.0
    assert r.hi == pytest.approx(-math.log(0.025) / 10.0)  # P(0 events | hi) = alpha / 2
    with pytest.raises(LegatoError):
        exposure(0, [1.0])
    with pytest.raises(LegatoError):
        poisson_rate(1, 0.0)
    with pytest.raises(LegatoError):
        poisson_rate(1, 1.0, confidence=1.5)


@pytest.mark.parametrize("mean", [0.5, 3.0, 20.0])
def test_poisson_interval_covers_the_true_rate(mean):
    rng = np.random.default_rng(1)
    expo, hits = 7.0, 0
    counts = rng.poisson(mean, 2000)
    for k in counts:
        iv = poisson_rate(int(k), expo)
        hits += iv.lo <= mean / expo <= iv.hi
    assert hits / counts.size >= 0.94  # exact intervals are conservative


def test_rate_ratio_detects_a_lower_rate_and_is_calibrated_under_equal_rates():
    ratio, p = rate_ratio(20, 100.0, 0, 100.0)
    assert p == pytest.approx(0.5**20) and ratio.hi < 0.25 and ratio.value == 0.0
    ratio, p = rate_ratio(10, 100.0, 10, 50.0)  # b fails twice as often per unit exposure
    assert ratio.value == pytest.approx(2.0) and ratio.lo < 2.0 < ratio.hi and p > 0.9
    none, p = rate_ratio(0, 5.0, 0, 5.0)
    assert math.isnan(none.value) and p == 1.0
    rng = np.random.default_rng(2)
    ps, hits = [], 0
    for _ in range(2000):
        ka, kb = rng.poisson(6.0), rng.poisson(3.0)  # equal rates, b has half the exposure
        iv, pv = rate_ratio(int(ka), 2.0, int(kb), 1.0)
        ps.append(pv)
        hits += iv.lo <= 1.0 <= iv.hi
    assert np.mean(np.array(ps) < 0.05) <= 0.05 and hits / 2000 >= 0.94
