"""Per-model measures compared across arms, paired by seed (legato.stats.per_model)."""

from __future__ import annotations

import numpy as np
import pytest

from legato.stats.per_model import arm_summaries, paired_by_seed, rank_correlation


def test_arm_summaries_mean_and_interval():
    vals = {"allegro": {1: 1.0, 2: 2.0, 3: 3.0, 4: 4.0}, "legato": {1: 5.0}}
    out = arm_summaries(vals, n_boot=500)
    m = out["allegro"]["mean"]
    assert m["value"] == pytest.approx(2.5) and 1.0 <= m["lo"] < 2.5 < m["hi"] <= 4.0
    assert out["legato"]["mean"] is None and out["legato"]["values"] == {1: 5.0}


def test_paired_by_seed_finds_a_consistent_halving():
    rng = np.random.default_rng(3)
    base = {s: float(v) for s, v in enumerate(rng.uniform(1, 10, 8), start=1)}
    vals = {"allegro": base, "legato": {s: 0.5 * v for s, v in base.items()}, "allegro_2x": {1: 1.0}}
    (c,) = paired_by_seed(vals, "legato", n_boot=500)  # allegro_2x shares one seed only: skipped
    assert c["other"] == "allegro" and c["seeds"] == 8
    assert c["ratio"]["value"] == pytest.approx(0.5) and c["ratio"]["lo"] == pytest.approx(0.5)
    assert c["reference_lower"] == 8 and c["p_sign"] < 0.01
    # noise around equality: the interval covers 1 and the sign test does not reject
    noisy = {"allegro": base, "legato": {s: v * float(np.exp(rng.normal(0, 0.1))) for s, v in base.items()}}
    (c,) = paired_by_seed(noisy, "legato", n_boot=500)
    assert c["ratio"]["lo"] < 1 < c["ratio"]["hi"] and c["p_sign"] > 0.05
    assert paired_by_seed({"allegro": base}, "legato") == []


def test_rank_correlation():
    x = {("a", s): float(s) for s in range(1, 9)}
    up = {k: v**3 for k, v in x.items()}  # monotone: rank correlation 1 whatever the shape
    assert rank_correlation(x, up)["spearman"] == pytest.approx(1.0)
    down = {k: -v for k, v in x.items()}
    c = rank_correlation(x, down)
    assert c["spearman"] == pytest.approx(-1.0) and c["p"] < 0.01 and c["models"] == 8
    assert rank_correlation(x, {k: 1.0 for k in x}) is None  # constant: undefined
    assert rank_correlation(x, {("a", 1): 1.0, ("a", 2): 2.0}) is None  # too few shared models
