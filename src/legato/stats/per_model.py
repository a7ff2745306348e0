"""Measures with one value per trained model (test error, sharpness), compared across arms.

Every arm of study v2 trains one model per seed, and a seed fixes the training subset and the
initial weights for all arms; so Legato and each Adam arm are compared *paired by seed*: the
geometric-mean ratio over seeds with a bootstrap over seeds, wins and a sign test
(:func:`legato.stats.hierarchical.paired_comparison` with seeds as the shared instances). Pure
functions: mappings in, numbers out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

import numpy as np
from scipy import stats

from legato.stats.hierarchical import Interval, paired_comparison, percentile_interval

#: arm -> model seed -> value
PerModel = Mapping[str, Mapping[int, float]]


def arm_summaries(values: PerModel, n_boot: int = 2000, seed: int = 0, confidence: float = 0.95) -> dict:
    """Per arm: the values by seed and their mean with a percentile-bootstrap interval over
    models (None for a single model)."""
    rng = np.random.default_rng(seed)
    out = {}
    for arm, by_seed in values.items():
        seeds = sorted(by_seed)
        v = np.array([float(by_seed[s]) for s in seeds])
        mean = None
        if v.size >= 2:
            boot = rng.choice(v, (n_boot, v.size)).mean(1)
            mean = asdict(Interval(float(v.mean()), *percentile_interval(boot, confidence), confidence))
        out[arm] = {"models": int(v.size), "mean": mean, "values": dict(zip(seeds, v.tolist(), strict=True))}
    return out


def paired_by_seed(
    values: PerModel,
    reference: str,
    n_boot: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> list[dict[str, Any]]:
    """``reference`` (e.g. "legato") against every other arm on the seeds both trained: ratio
    reference/other (geometric mean over seeds, bootstrap interval), wins, sign-test p."""
    if reference not in values:
        return []
    out = []
    for other, by_seed in values.items():
        if other == reference:
            continue
        shared = sorted(set(by_seed) & set(values[reference]))
        if len(shared) < 2:
            continue
        a = np.array([[float(by_seed[s]) for s in shared]])  # [1, n_seeds]
        b = np.array([[float(values[reference][s]) for s in shared]])
        if min(a.min(), b.min()) <= 0:
            continue  # a ratio needs positive values
        res = paired_comparison(a, b, n_boot, seed, confidence)
        out.append(
            {
                "reference": reference,
                "other": other,
                "seeds": len(shared),
                "ratio": asdict(res.ratio),
                "reference_higher": res.wins_b,
                "reference_lower": res.wins_a,
                "p_sign": res.p_sign,
            }
        )
    return out


def rank_correlation(x: Mapping[Any, float], y: Mapping[Any, float]) -> dict[str, Any] | None:
    """Spearman's rank correlation of two per-model measures over the models both have (keys,
    e.g. (arm, seed)), with its two-sided p; None with fewer than 4 models or a constant one."""
    keys = sorted(set(x) & set(y))
    a, b = np.array([float(x[k]) for k in keys]), np.array([float(y[k]) for k in keys])
    if len(keys) < 4 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    res = stats.spearmanr(a, b)
    return {"models": len(keys), "spearman": float(res.statistic), "p": float(res.pvalue)}
