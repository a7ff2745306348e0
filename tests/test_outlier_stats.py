"""Fig. 1 reduced to numbers: per-run outlier histories and their growth per ensemble."""

from __future__ import annotations

import math

import numpy as np
import pytest

from legato.errors import LegatoError
from legato.stats.outliers import outlier_growth, run_outlier_summary


def test_run_summary_uses_nve_checks_per_1000_atoms():
    steps = np.array([-20, -10, 0, 10, 20, 30, 40, 50, 60, 70])  # two NVT checks first
    counts = np.array([99, 99, 1, 1, 2, 2, 3, 3, 4, 8])
    s = run_outlier_summary(steps, counts, n_atoms=500)
    assert s["checks"] == 8
    assert s["early"] == pytest.approx(2.0 * 1.0)  # first quarter: 2 checks of 1 outlier, x2 per 1,000
    assert s["late"] == pytest.approx(2.0 * 6.0)
    assert s["final"] == pytest.approx(16.0)
    # unsorted input gives the same answer
    perm = np.random.default_rng(0).permutation(steps.size)
    assert run_outlier_summary(steps[perm], counts[perm], 500) == s
    empty = run_outlier_summary(np.array([-10]), np.array([3]), 100)
    assert empty["checks"] == 0 and math.isnan(empty["early"])
    with pytest.raises(LegatoError):
        run_outlier_summary(np.arange(3), np.arange(4), 10)


def test_growth_of_flat_and_cascading_ensembles():
    flat = [run_outlier_summary(np.arange(12), np.full(12, 2), 1000) for _ in range(3)]
    g = outlier_growth(flat)
    assert g["runs"] == 3 and g["late_over_early"] == pytest.approx(1.0) and g["share_grown"] == 0.0
    rising = [run_outlier_summary(np.arange(12), np.arange(12) + 1, 1000) for _ in range(2)]
    g = outlier_growth(flat + rising)
    assert g["share_grown"] == pytest.approx(0.4) and g["late_over_early"] > 1.0
    short = run_outlier_summary(np.arange(3), np.arange(3), 1000)  # < 4 NVE checks: left out
    assert outlier_growth([short]) == {"runs": 0}
