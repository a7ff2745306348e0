"""β from censored runs over several trained models: a Weibull fit with λ(N) = a·N^(−β)
pooled over an arm's models, with a hierarchical bootstrap interval.

When many runs reach the step budget alive, means that count a censored run as failing at
its budget (the paper's fit, :mod:`legato.stats.hierarchical`) are lower bounds and their β
is biased towards 0. The Weibull likelihood counts a censored run as surviving to its budget
(:func:`legato.stats.scaling.weibull_mle`); one shape is shared by all sizes (test it with
:func:`legato.stats.hierarchical.shape_homogeneity`). Resampling draws models with
replacement, then runs within each drawn model and size; resamples without a failure (no
maximum) are left out and counted. Pure functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from legato.errors import LegatoError
from legato.stats.hierarchical import Interval
from legato.stats.scaling import weibull_mle

#: one model's runs: n_atoms -> (times [n_runs], censored [n_runs])
CensoredRuns = dict[int, tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class CensoredBeta:
    """Pooled Weibull β of one arm (interval: bootstrap over models and runs)."""

    beta: Interval
    shape: float
    runs: int
    failures: int
    resamples_fitted: int


def _pool(models: Sequence[CensoredRuns]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = [np.full(len(t), size, float) for m in models for size, (t, _) in sorted(m.items())]
    t = [np.asarray(t, float) for m in models for _, (t, _) in sorted(m.items())]
    c = [np.asarray(c, bool) for m in models for _, (_, c) in sorted(m.items())]
    return np.concatenate(n), np.concatenate(t), np.concatenate(c)


def _resample(models: Sequence[CensoredRuns], rng: np.random.Generator) -> list[CensoredRuns]:
    out = []
    for i in rng.integers(0, len(models), len(models)):
        m = {}
        for size, (t, c) in models[i].items():
            idx = rng.integers(0, len(t), len(t))
            m[size] = (np.asarray(t)[idx], np.asarray(c)[idx])
        out.append(m)
    return out


def _beta(models: Sequence[CensoredRuns]) -> float | None:
    try:
        return weibull_mle(*_pool(models))[0]
    except LegatoError:
        return None


def _interval(value: float, boot: list[float], n_boot: int, confidence: float) -> Interval:
    if len(boot) < max(2, n_boot // 2):
        raise LegatoError(f"only {len(boot)} of {n_boot} resamples had a failure to fit")
    q = 100.0 * np.array([(1 - confidence) / 2, (1 + confidence) / 2])
    lo, hi = np.percentile(boot, q)
    return Interval(float(value), float(lo), float(hi), confidence)


def censored_beta(
    models: Sequence[CensoredRuns], n_boot: int = 1000, seed: int = 0, confidence: float = 0.95
) -> CensoredBeta:
    """Weibull β of all runs of an arm's models, with a hierarchical bootstrap interval."""
    if not models:
        raise LegatoError("censored beta: no models")
    n, t, c = _pool(models)
    beta, shape = weibull_mle(n, t, c)
    rng = np.random.default_rng(seed)
    boot = [b for b in (_beta(_resample(models, rng)) for _ in range(n_boot)) if b is not None]
    return CensoredBeta(
        _interval(beta, boot, n_boot, confidence), float(shape), int(t.size), int((~c).sum()), len(boot)
    )


def compare_censored_betas(
    a: Sequence[CensoredRuns],
    b: Sequence[CensoredRuns],
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[Interval, float]:
    """β_b − β_a (Weibull, pooled per arm) with its hierarchical bootstrap interval and the
    one-sided bootstrap p-value of β_b < β_a (share of resamples with β_b − β_a >= 0)."""
    diff = weibull_mle(*_pool(b))[0] - weibull_mle(*_pool(a))[0]
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(n_boot):
        ba, bb = _beta(_resample(a, rng)), _beta(_resample(b, rng))
        if ba is not None and bb is not None:
            boot.append(bb - ba)
    iv = _interval(diff, boot, n_boot, confidence)
    return iv, float((np.sum(np.asarray(boot) >= 0) + 1) / (len(boot) + 1))
