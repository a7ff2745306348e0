"""legato.stats.hierarchical on synthetic studies with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from legato.errors import LegatoError
from legato.stats.hierarchical import (
    compare_betas,
    hierarchical_mean,
    paired_comparison,
    paired_on_shared,
    pooled_beta,
    ratio_of_means,
    shape_homogeneity,
    weibull_shape,
)

SIZES = (128, 1024, 8192)


def _arm(rng, n_models, n_inst, mean=1000.0, model_sd=0.5):
    """Models whose mean time varies between training runs (log-normal), exponential times."""
    return [rng.exponential(mean * np.exp(model_sd * rng.normal()), n_inst) for _ in range(n_models)]


def test_hierarchical_interval_covers_the_population_mean():
    """Between-model spread dominates: the two-level interval covers the arm mean at close to
    its nominal rate, while an instances-only interval would not."""
    rng = np.random.default_rng(0)
    true = 1000.0 * np.exp(0.5**2 / 2)  # mean of the log-normal model means
    hits = 0
    for k in range(120):
        groups = _arm(rng, 8, 20)
        ci = hierarchical_mean(groups, n_boot=400, seed=k, confidence=0.9)
        hits += ci.lo <= true <= ci.hi
        flat = np.concatenate(groups)
        assert ci.hi - ci.lo > 2 * 1.645 * flat.std() / np.sqrt(flat.size)  # wider than naive
    assert hits / 120 > 0.75


def test_ratio_of_means_detects_a_factor_two():
    rng = np.random.default_rng(1)
    a = _arm(rng, 6, 30, mean=1000.0, model_sd=0.1)
    b = _arm(rng, 6, 30, mean=2000.0, model_sd=0.1)
    r = ratio_of_means(a, b, n_boot=800)
    assert r.lo > 1.3 and r.hi < 3.0 and r.lo < r.value < r.hi


def test_paired_comparison_uses_the_pairing():
    rng = np.random.default_rng(2)
    base = rng.exponential(1000.0, 40)  # instance difficulty shared by both arms
    a = base[None, :] * np.exp(0.05 * rng.normal(size=(5, 40)))
    b = 1.5 * base[None, :] * np.exp(0.05 * rng.normal(size=(5, 40)))
    res = paired_comparison(a, b, n_boot=800)
    assert res.ratio.lo < 1.5 < res.ratio.hi and res.ratio.hi - res.ratio.lo < 0.2
    assert res.wins_b == 40 and res.p_sign < 1e-6 and res.p_wilcoxon < 1e-6
    same = paired_comparison(a, a * np.exp(0.05 * rng.normal(size=a.shape)), n_boot=400)
    assert same.ratio.lo < 1.0 < same.ratio.hi and same.p_sign > 0.01
    with pytest.raises(LegatoError):
        paired_comparison(a, b[:, :10])


def _scaling_arm(rng, beta, n_models, n_inst=30, beta_sd=0.03):
    out = []
    for _ in range(n_models):
        b = beta + beta_sd * rng.normal()
        out.append({n: rng.exponential(2.0e4 * n**-b, n_inst) for n in SIZES})
    return out


def test_pooled_beta_recovers_the_exponent():
    rng = np.random.default_rng(3)
    res = pooled_beta(_scaling_arm(rng, 0.5, 6), n_boot=400)
    assert len(res.per_model) == 6
    assert res.pooled.lo < 0.5 < res.pooled.hi and abs(res.pooled.value - 0.5) < 0.1
    assert res.between_model_sd > 0


def test_compare_betas_separates_distinct_arms_only():
    rng = np.random.default_rng(4)
    allegro, legato = _scaling_arm(rng, 0.6, 5), _scaling_arm(rng, 0.3, 5)
    res = compare_betas(allegro, legato, n_boot=400)
    assert res.difference.hi < 0 and res.p_bootstrap < 0.01 and res.p_welch < 0.01 and res.hedges_g < -1
    null = compare_betas(_scaling_arm(rng, 0.5, 5), _scaling_arm(rng, 0.5, 5), n_boot=400)
    assert null.difference.lo < 0 < null.difference.hi and null.p_bootstrap > 0.02
    with pytest.raises(LegatoError, match="2 sizes"):
        pooled_beta([{128: np.ones(3)}])


def _weibull(rng, k, n, scale=1000.0, budget=1500.0):
    t = scale * rng.weibull(k, n)
    return np.minimum(t, budget), t >= budget


def test_weibull_shape_with_censoring():
    """Agrees with scipy's MLE without censoring; with censoring the 95 % profile interval
    covers the true shape in about 95 % of repeats."""
    from scipy import stats

    rng = np.random.default_rng(5)
    t = 1000.0 * rng.weibull(2.0, 300)
    free = weibull_shape(t, np.zeros(t.size, bool)).shape.value
    assert free == pytest.approx(stats.weibull_min.fit(t, floc=0)[0], rel=1e-5)
    for k in (0.8, 2.0, 4.0):
        fits = []
        for _ in range(40):
            t, c = _weibull(rng, k, 300)
            fits.append(weibull_shape(t, c).shape)
        assert sum(f.lo < k < f.hi for f in fits) >= 34
        assert np.median([f.hi / f.lo for f in fits]) < 1.6
    with pytest.raises(LegatoError, match="two failures"):
        weibull_shape(np.array([5.0, 5.0]), np.array([True, False]))


def test_shape_homogeneity_flags_size_dependent_shapes():
    rng = np.random.default_rng(6)
    same = {n: _weibull(rng, 2.0, 200, scale=1000.0 * n**-0.3) for n in SIZES}
    _, p_same, dof = shape_homogeneity(same)
    assert dof == 2 and p_same > 0.01
    diff = {128: _weibull(rng, 1.0, 200), 1024: _weibull(rng, 4.0, 200)}
    assert shape_homogeneity(diff)[1] < 1e-4


def test_paired_on_shared_uses_the_instances_every_model_ran():
    a = [{0: 1.0, 1: 2.0, 2: 3.0}, {0: 1.5, 1: 2.5, 2: 3.5, 7: 9.0}]
    b = [{0: 2.0, 1: 4.0, 2: 6.0, 5: 1.0}]
    got = paired_on_shared(a, b, n_boot=200)
    pa, pb = np.array([[1.0, 2.0, 3.0], [1.5, 2.5, 3.5]]), np.array([[2.0, 4.0, 6.0]])
    want = paired_comparison(pa, pb, n_boot=200)
    assert got == want and got.n_instances == 3
    assert paired_on_shared(a, [{0: 2.0, 5: 1.0}]) is None  # one shared instance only
