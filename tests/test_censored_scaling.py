"""β from censored runs of several models: recovers a known exponent where the means fit of
censored runs is biased, and tells two exponents apart."""

from __future__ import annotations

import numpy as np
import pytest

from legato.errors import LegatoError
from legato.stats.censored_scaling import censored_beta, compare_censored_betas
from legato.stats.hierarchical import pooled_beta


def _arm(beta: float, rng: np.random.Generator, models: int = 5, runs: int = 12, budget: float = 900.0):
    """Weibull (k = 1.5) times with scale 3000·(N/128)^-beta, censored at ``budget``; each model
    has its own prefactor (log-normal, 10 %)."""
    out = []
    for _ in range(models):
        a = 3000.0 * np.exp(0.1 * rng.standard_normal())
        m = {}
        for n in (128, 1024, 8192):
            t = a * (n / 128) ** (-beta) * rng.weibull(1.5, runs)
            m[n] = (np.minimum(t, budget), t >= budget)
        out.append(m)
    return out


def test_recovers_beta_under_heavy_censoring_where_means_are_biased():
    rng = np.random.default_rng(1)
    arm = _arm(0.4, rng)
    censored = sum(int(c.sum()) for m in arm for _, c in m.values())
    assert censored > 40  # most small-box runs reach the budget alive
    fit = censored_beta(arm, n_boot=200, seed=0)
    assert fit.beta.lo < 0.4 < fit.beta.hi and abs(fit.beta.value - 0.4) < 0.1
    assert fit.shape == pytest.approx(1.5, rel=0.3) and fit.resamples_fitted == 200
    means = pooled_beta([{n: t for n, (t, _) in m.items()} for m in arm], n_boot=200)
    assert means.pooled.value < fit.beta.lo  # counting censored runs as failures flattens β


def test_compare_tells_exponents_apart_and_refuses_no_failures():
    rng = np.random.default_rng(2)
    steep, flat = _arm(0.6, rng), _arm(0.1, rng)
    diff, p = compare_censored_betas(steep, flat, n_boot=200, seed=0)
    assert diff.hi < 0 and p < 0.02
    diff, p = compare_censored_betas(flat, _arm(0.1, rng), n_boot=200, seed=0)
    assert diff.lo < 0 < diff.hi and p > 0.05
    alive = [{n: (np.full(4, 900.0), np.ones(4, bool)) for n in (128, 1024)}]
    with pytest.raises(LegatoError, match="censored"):
        censored_beta(alive, n_boot=10)
