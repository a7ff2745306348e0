"""Inference over several trained models per arm and several MD instances per model.

A study arm (e.g. "Allegro, Adam" or "Legato, SAM") is a *population of training runs*; each
trained model is run on many MD instances at several sizes. Intervals that resample only the
instances treat one training run as the arm and are too narrow: a rerun with another seed
moves the estimate by more than they allow. Here every interval and test resamples both
levels — models with replacement, then instances within each drawn model (the hierarchical
bootstrap) — and the exponent β is fitted per model and pooled.

Times are censored at the NVE budget; as in :func:`legato.stats.scaling.fit_means` (the
paper's fit), means treat a censored run as failing at its budget, so they are lower bounds
when runs are censored. All functions are pure: arrays in, numbers out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

from legato.errors import LegatoError

Group = list[np.ndarray]  # one array of instance times per model


@dataclass(frozen=True)
class Interval:
    """An estimate with a percentile-bootstrap interval."""

    value: float
    lo: float
    hi: float
    confidence: float

    def as_list(self) -> list[float]:
        return [self.value, self.lo, self.hi]


def _check(groups: Sequence[np.ndarray], what: str) -> list[np.ndarray]:
    out = [np.asarray(g, dtype=float).ravel() for g in groups]
    if not out or any(g.size == 0 for g in out):
        raise LegatoError(f"{what}: every model needs at least one instance")
    if any(not np.all(np.isfinite(g)) or np.any(g <= 0) for g in out):
        raise LegatoError(f"{what}: times must be finite and > 0")
    return out


def percentile_interval(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    """The central ``confidence`` interval of bootstrap ``samples`` (percentiles)."""
    if not 0 < confidence < 1:
        raise LegatoError(f"confidence must be in (0, 1), got {confidence}")
    q = 100.0 * np.array([(1 - confidence) / 2, (1 + confidence) / 2])
    lo, hi = np.percentile(samples, q)
    return float(lo), float(hi)


def resample_groups(groups: Sequence[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """One hierarchical resample: models drawn with replacement, then instances within each."""
    picks = rng.integers(0, len(groups), len(groups))
    return [groups[i][rng.integers(0, groups[i].size, groups[i].size)] for i in picks]


def pooled_mean(groups: Sequence[np.ndarray]) -> float:
    """Mean over models of each model's mean (every training run weighs the same)."""
    return float(np.mean([g.mean() for g in groups]))


def hierarchical_mean(
    groups: Sequence[np.ndarray], n_boot: int = 2000, seed: int = 0, confidence: float = 0.95
) -> Interval:
    """Arm mean of t_failure (mean of per-model means) with a two-level bootstrap interval."""
    groups = _check(groups, "hierarchical mean")
    rng = np.random.default_rng(seed)
    boot = np.array([pooled_mean(resample_groups(groups, rng)) for _ in range(n_boot)])
    return Interval(pooled_mean(groups), *percentile_interval(boot, confidence), confidence)


def ratio_of_means(
    a: Sequence[np.ndarray],
    b: Sequence[np.ndarray],
    n_boot: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> Interval:
    """mean(b) / mean(a) of two independent arms; both resampled hierarchically."""
    a, b = _check(a, "ratio (first arm)"), _check(b, "ratio (second arm)")
    rng = np.random.default_rng(seed)
    boot = np.array(
        [pooled_mean(resample_groups(b, rng)) / pooled_mean(resample_groups(a, rng)) for _ in range(n_boot)]
    )
    return Interval(pooled_mean(b) / pooled_mean(a), *percentile_interval(boot, confidence), confidence)


# ----------------------------------------------------------------------------- paired
@dataclass(frozen=True)
class PairedResult:
    """Arms compared on shared instances (same starting box and velocities)."""

    n_instances: int
    mean_log_ratio: Interval  # mean over instances of log(t_b / t_a), arm means per instance
    ratio: Interval  # exp of the above: geometric-mean ratio t_b / t_a
    wins_b: int  # instances where arm b lasted longer
    wins_a: int
    ties: int  # equal times (e.g. both censored at the budget)
    p_sign: float  # two-sided sign test over instances (ties dropped)
    p_wilcoxon: float | None  # two-sided Wilcoxon signed-rank test (None: too few non-ties)


def paired_comparison(
    a: np.ndarray, b: np.ndarray, n_boot: int = 2000, seed: int = 0, confidence: float = 0.95
) -> PairedResult:
    """Compare arms on shared instances. ``a`` [n_models_a, n_instances] and ``b``
    [n_models_b, n_instances] hold t_failure of every model on every shared instance.

    Per instance the arm's value is the mean of log t over its models; the bootstrap draws
    models of each arm and instances (jointly for both arms, which keeps the pairing)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or a.shape[1] < 2:
        raise LegatoError("paired comparison needs [models, instances] arrays sharing >= 2 instances")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b)) and a.min() > 0 and b.min() > 0):
        raise LegatoError("paired comparison: times must be finite and > 0")
    la, lb = np.log(a), np.log(b)
    d = lb.mean(0) - la.mean(0)  # [n_instances]
    rng = np.random.default_rng(seed)
    n_inst = d.size
    boot = np.empty(n_boot)
    for j in range(n_boot):
        inst = rng.integers(0, n_inst, n_inst)
        ma = rng.integers(0, la.shape[0], la.shape[0])
        mb = rng.integers(0, lb.shape[0], lb.shape[0])
        boot[j] = (lb[np.ix_(mb, inst)].mean(0) - la[np.ix_(ma, inst)].mean(0)).mean()
    lo, hi = percentile_interval(boot, confidence)
    mlr = Interval(float(d.mean()), lo, hi, confidence)
    tol = 1e-12
    wins_b, wins_a = int((d > tol).sum()), int((d < -tol).sum())
    ties = n_inst - wins_b - wins_a
    p_sign = float(stats.binomtest(wins_b, wins_b + wins_a).pvalue) if wins_a + wins_b else 1.0
    nz = d[np.abs(d) > tol]
    p_w = float(stats.wilcoxon(nz).pvalue) if nz.size >= 6 else None
    return PairedResult(
        n_instances=n_inst,
        mean_log_ratio=mlr,
        ratio=Interval(math.exp(mlr.value), math.exp(lo), math.exp(hi), confidence),
        wins_b=wins_b,
        wins_a=wins_a,
        ties=ties,
        p_sign=p_sign,
        p_wilcoxon=p_w,
    )


def paired_on_shared(
    a: Sequence[Mapping[int, float]],
    b: Sequence[Mapping[int, float]],
    n_boot: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> PairedResult | None:
    """:func:`paired_comparison` on the instances that every model of both arms ran. ``a`` and
    ``b``: one mapping per model, instance seed -> value. None if fewer than 2 are shared."""
    shared = sorted(set.intersection(*(set(m) for m in [*a, *b])))
    if len(shared) < 2:
        return None
    pa = np.array([[m[i] for i in shared] for m in a])
    pb = np.array([[m[i] for i in shared] for m in b])
    return paired_comparison(pa, pb, n_boot, seed, confidence)


# ----------------------------------------------------------------------------- beta
def beta_of_means(sizes: np.ndarray, means: np.ndarray) -> float:
    """β of the paper's fit: −slope of log(mean t) against log N (least squares)."""
    x, y = np.log(np.asarray(sizes, float)), np.log(np.asarray(means, float))
    xc = x - x.mean()
    return float(-(xc * (y - y.mean())).sum() / (xc * xc).sum())


ModelRuns = dict[int, np.ndarray]  # n_atoms -> instance times of one model


def _model_beta(runs: ModelRuns) -> float:
    sizes = sorted(runs)
    return beta_of_means(np.array(sizes), np.array([runs[n].mean() for n in sizes]))


def _resample_model(runs: ModelRuns, rng: np.random.Generator) -> ModelRuns:
    return {n: t[rng.integers(0, t.size, t.size)] for n, t in runs.items()}


def _check_models(models: Sequence[ModelRuns], what: str) -> list[ModelRuns]:
    out = []
    for m in models:
        if len(m) < 2:
            raise LegatoError(f"{what}: every model needs runs at >= 2 sizes to fit β")
        out.append({int(n): _check([t], what)[0] for n, t in m.items()})
    if not out:
        raise LegatoError(f"{what}: no models")
    return out


@dataclass(frozen=True)
class PooledBeta:
    """β of one arm: one fit per trained model, pooled as their mean."""

    per_model: list[float]
    pooled: Interval  # mean of per-model β; hierarchical bootstrap interval
    between_model_sd: float  # spread of β over training runs (nan for one model)


def pooled_beta(
    models: Sequence[ModelRuns], n_boot: int = 2000, seed: int = 0, confidence: float = 0.95
) -> PooledBeta:
    """Per-model β (paper's fit of each model's size means) and their mean with a
    bootstrap over models and instances."""
    models = _check_models(models, "pooled beta")
    per = [_model_beta(m) for m in models]
    rng = np.random.default_rng(seed)
    boot = np.empty(n_boot)
    for j in range(n_boot):
        picks = rng.integers(0, len(models), len(models))
        boot[j] = np.mean([_model_beta(_resample_model(models[i], rng)) for i in picks])
    sd = float(np.std(per, ddof=1)) if len(per) > 1 else float("nan")
    return PooledBeta(
        per, Interval(float(np.mean(per)), *percentile_interval(boot, confidence), confidence), sd
    )


@dataclass(frozen=True)
class BetaComparison:
    """Test of β_b < β_a (e.g. b = Legato, a = Allegro)."""

    difference: Interval  # pooled β_b − β_a, hierarchical bootstrap
    p_bootstrap: float  # one-sided: share of resamples with β_b − β_a >= 0 (+1 smoothing)
    p_welch: float | None  # one-sided Welch t-test on per-model β (None: < 2 models per arm)
    hedges_g: float | None  # standardised effect size of per-model β (b − a); None as above


def compare_betas(
    a: Sequence[ModelRuns],
    b: Sequence[ModelRuns],
    n_boot: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> BetaComparison:
    """Is β smaller in arm ``b`` than in arm ``a``? Bootstrap over models and instances of
    both arms, plus a Welch test and Hedges' g on the per-model exponents."""
    a, b = _check_models(a, "beta comparison (a)"), _check_models(b, "beta comparison (b)")
    ba, bb = [_model_beta(m) for m in a], [_model_beta(m) for m in b]
    rng = np.random.default_rng(seed)
    boot = np.empty(n_boot)
    for j in range(n_boot):
        sa = [_model_beta(_resample_model(a[i], rng)) for i in rng.integers(0, len(a), len(a))]
        sb = [_model_beta(_resample_model(b[i], rng)) for i in rng.integers(0, len(b), len(b))]
        boot[j] = np.mean(sb) - np.mean(sa)
    diff = Interval(float(np.mean(bb) - np.mean(ba)), *percentile_interval(boot, confidence), confidence)
    p_boot = float((np.sum(boot >= 0) + 1) / (n_boot + 1))
    p_welch = g = None
    if len(ba) >= 2 and len(bb) >= 2:
        p_welch = float(stats.ttest_ind(bb, ba, equal_var=False, alternative="less").pvalue)
        na, nb = len(ba), len(bb)
        sp = math.sqrt(((na - 1) * np.var(ba, ddof=1) + (nb - 1) * np.var(bb, ddof=1)) / (na + nb - 2))
        corr = 1 - 3 / (4 * (na + nb) - 9)
        g = float(corr * (np.mean(bb) - np.mean(ba)) / sp) if sp > 0 else None
    return BetaComparison(diff, p_boot, p_welch, g)


# ----------------------------------------------------------------------------- Weibull shape
def _weibull_profile_ll(log_k: float, t: np.ndarray, failed: np.ndarray) -> float:
    """Censored Weibull log-likelihood maximised over the scale, at shape exp(log_k)."""
    k, d = math.exp(log_k), int(failed.sum())
    lt = np.log(t)
    s = np.log(np.exp(k * (lt - lt.max())).sum()) + k * lt.max()  # log Σ t^k
    return d * math.log(k) + (k - 1) * lt[failed].sum() - d * (s - math.log(d)) - d


@dataclass(frozen=True)
class ShapeFit:
    """Weibull shape k at one size (k > 1: the hazard rises with time; k = 1: memoryless)."""

    n: int
    n_failed: int
    shape: Interval  # profile-likelihood interval
    log_likelihood: float


def weibull_shape(t: np.ndarray, censored: np.ndarray, confidence: float = 0.95) -> ShapeFit:
    """Maximum-likelihood Weibull shape of one sample with right censoring."""
    t = np.asarray(t, float).ravel()
    failed = ~np.asarray(censored, bool).ravel()
    if t.size != failed.size or not np.all(np.isfinite(t)) or np.any(t <= 0):
        raise LegatoError("Weibull shape: times must be finite and > 0, one censoring flag each")
    if failed.sum() < 2:
        raise LegatoError("Weibull shape: needs at least two failures")
    if np.unique(t[failed]).size < 2:
        raise LegatoError("Weibull shape: all failures at one time; the shape is unbounded")
    f = lambda u: -_weibull_profile_ll(u, t, failed)  # noqa: E731
    res = optimize.minimize_scalar(f, bounds=(-5.0, 5.0), method="bounded", options={"xatol": 1e-8})
    u, ll = float(res.x), -float(res.fun)
    cut = ll - 0.5 * stats.chi2.ppf(confidence, 1)

    def edge(lo: float, hi: float) -> float:
        g = lambda v: _weibull_profile_ll(v, t, failed) - cut  # noqa: E731
        return float(optimize.brentq(g, lo, hi)) if g(lo) * g(hi) < 0 else (lo if g(lo) > 0 else hi)

    lo, hi = edge(-6.0, u), edge(u, 6.0)
    return ShapeFit(
        int(t.size), int(failed.sum()), Interval(math.exp(u), math.exp(lo), math.exp(hi), confidence), ll
    )


def shape_homogeneity(
    samples: dict[int, tuple[np.ndarray, np.ndarray]],
) -> tuple[float, float, int]:
    """Likelihood-ratio test of one Weibull shape shared by all sizes (scales free per size)
    against one shape per size. ``samples``: n_atoms -> (t, censored). Returns (LR statistic,
    p-value, degrees of freedom); a small p says the shape changes with size."""
    if len(samples) < 2:
        raise LegatoError("shape homogeneity needs >= 2 sizes")
    data = [(np.asarray(t, float), ~np.asarray(c, bool)) for t, c in samples.values()]
    free = sum(weibull_shape(t, ~f).log_likelihood for t, f in data)
    shared_f: Callable[[float], float] = lambda u: -sum(_weibull_profile_ll(u, t, f) for t, f in data)  # noqa: E731
    res = optimize.minimize_scalar(shared_f, bounds=(-5.0, 5.0), method="bounded", options={"xatol": 1e-8})
    lr = max(0.0, 2.0 * (free + float(res.fun)))
    dof = len(data) - 1
    return lr, float(stats.chi2.sf(lr, dof)), dof
