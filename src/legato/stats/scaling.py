"""Fidelity scaling: fit t_failure = α·N^(−β) to a failure table, two ways.

* ``fit_means`` — the paper's fit: least squares of log(mean t) on log N over sizes, with a
  percentile bootstrap CI (instances resampled within each size, seeded). Censored runs
  enter with their budget time, so under censoring this fit is biased (towards small β when
  the small systems are the ones that survive the budget).
* ``fit_weibull`` — a survival model that uses censored runs correctly: T ~ Weibull with
  shape k (shared by all sizes) and scale λ(N) = a·N^(−β), fitted by maximum likelihood.
  Every quantile and the mean of T then scale as N^(−β), so β is the paper's exponent.
  ``shape=1`` fixes k and gives the exponential (constant-hazard) model. CIs come from the
  profile likelihood (or, optionally, a bootstrap).

The scale a is profiled out analytically: with w_i = t_i·N_i^β and d failures,
a^k = Σ_i w_i^k / d and  ℓ(β, k) = d·log k + k·Σ_fail log w_i − Σ_fail log t_i
− d·log(Σ_i w_i^k / d) − d, which is the exact log-likelihood maximised over a.

:func:`tfail_verdict` and :func:`beta_verdict` compare Legato with Allegro from these numbers
(order and sign of the estimates, overlap of their intervals) for the study's report.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
from scipy import optimize, special, stats

from legato.errors import LegatoError
from legato.stats.failures import FailureTable
from legato.stats.survival import kaplan_meier


@dataclass(frozen=True)
class ScalingFit:
    """Result of one fit of t_failure = α·N^(−β). Times are in ``time_unit``."""

    method: str  # "means" | "weibull" | "exponential"
    beta: float
    beta_ci: tuple[float, float]
    alpha: float  # prefactor of the mean: E[t](N) = alpha * N**-beta
    n: int  # instances used
    n_censored: int
    sizes: tuple[int, ...]
    confidence: float
    ci_method: str  # "bootstrap" | "profile-likelihood"
    time_unit: str = "steps"
    shape: float | None = None  # Weibull k (1 for exponential); None for the means fit
    shape_ci: tuple[float, float] | None = None
    scale_alpha: float | None = None  # λ(N) = scale_alpha * N**-beta (survival fits)
    log_likelihood: float | None = None
    n_boot: int | None = None
    seed: int | None = None

    def mean_at(self, n_atoms: np.ndarray | float) -> np.ndarray:
        """Fitted mean time-to-failure at sizes ``n_atoms``."""
        return self.alpha * np.asarray(n_atoms, dtype=float) ** (-self.beta)

    def median_at(self, n_atoms: np.ndarray | float) -> np.ndarray:
        """Fitted median time-to-failure (survival fits only)."""
        if self.scale_alpha is None or self.shape is None:
            raise LegatoError("the means fit does not model the median")
        pref = self.scale_alpha * math.log(2.0) ** (1.0 / self.shape)
        return pref * np.asarray(n_atoms, dtype=float) ** (-self.beta)

    def to_dict(self) -> dict:
        d = asdict(self)
        for key in ("beta_ci", "shape_ci", "sizes"):
            if d[key] is not None:
                d[key] = list(d[key])
        return d


@dataclass(frozen=True)
class SizeSummary:
    """Per-size statistics. ``mean``/``sem`` treat censored runs as failing at their budget."""

    n_atoms: int
    n: int
    n_censored: int
    mean: float
    sem: float  # standard error of the mean (nan for n = 1)
    median: float  # Kaplan–Meier median (inf if S never reaches 0.5)
    median_ci: tuple[float, float]  # from the KM band (inf = not reached)


# -- input checks ---------------------------------------------------------------------------
def _prepare(
    n_atoms: np.ndarray, t: np.ndarray, censored: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n_atoms = np.asarray(n_atoms, dtype=float).ravel()
    t = np.asarray(t, dtype=float).ravel()
    censored = np.zeros(t.shape, bool) if censored is None else np.asarray(censored, bool).ravel()
    if not (n_atoms.shape == t.shape == censored.shape):
        raise LegatoError("n_atoms, t and censored must have the same length")
    if t.size == 0:
        raise LegatoError("no instances to fit")
    if np.any(n_atoms <= 0) or not np.all(np.isfinite(t)) or np.any(t <= 0):
        raise LegatoError("fits need n_atoms > 0 and finite t_failure > 0 for every instance")
    if np.unique(n_atoms).size < 2:
        raise LegatoError("fitting N^-beta needs at least two system sizes")
    return n_atoms, t, censored


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise LegatoError(f"confidence must be in (0, 1), got {confidence}")


# -- the paper's fit ------------------------------------------------------------------------
def _ols_slope_intercept(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares line through points (x [K], y [..., K]); returns (slope, intercept)."""
    xc = x - x.mean()
    slope = (y * xc).sum(-1) / (xc * xc).sum()
    return slope, y.mean(-1) - slope * x.mean()


def fit_means(
    n_atoms: np.ndarray,
    t: np.ndarray,
    censored: np.ndarray | None = None,
    n_boot: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
    time_unit: str = "steps",
) -> ScalingFit:
    """The paper's fit: log(mean t per size) = log α − β·log N by least squares.

    CI: percentile bootstrap over ``n_boot`` resamples of the instances within each size.
    """
    n_atoms, t, censored = _prepare(n_atoms, t, censored)
    _check_confidence(confidence)
    if n_boot < 1:
        raise LegatoError("n_boot must be >= 1")
    sizes = np.unique(n_atoms)  # [K]
    x = np.log(sizes)
    groups = [t[n_atoms == s] for s in sizes]
    y = np.log([g.mean() for g in groups])  # [K]
    slope, intercept = _ols_slope_intercept(x, y)
    rng = np.random.default_rng(seed)
    y_boot = np.empty((n_boot, sizes.size))  # [B, K]
    for j, g in enumerate(groups):
        idx = rng.integers(0, g.size, size=(n_boot, g.size))
        y_boot[:, j] = np.log(g[idx].mean(axis=1))
    b_slope, _ = _ols_slope_intercept(x, y_boot)
    q = 100.0 * np.array([(1 - confidence) / 2, (1 + confidence) / 2])
    lo, hi = np.percentile(-b_slope, q)
    return ScalingFit(
        method="means",
        beta=float(-slope),
        beta_ci=(float(lo), float(hi)),
        alpha=float(math.exp(intercept)),
        n=int(t.size),
        n_censored=int(censored.sum()),
        sizes=tuple(int(s) for s in sizes),
        confidence=confidence,
        ci_method="bootstrap",
        time_unit=time_unit,
        n_boot=n_boot,
        seed=seed,
    )


# -- the survival fit -----------------------------------------------------------------------
def _logsumexp(u: np.ndarray) -> float:
    m = float(u.max())
    return m + math.log(float(np.exp(u - m).sum()))


class _WeibullProfile:
    """Log-likelihood ℓ(β, k) with the scale profiled out, and its gradient."""

    def __init__(self, n_atoms: np.ndarray, t: np.ndarray, censored: np.ndarray) -> None:
        self.x0 = float(np.log(n_atoms).mean())
        self.x = np.log(n_atoms) - self.x0  # [n] centred log N
        self.lt = np.log(t)  # [n]
        self.ev = ~censored  # [n]
        self.d = int(self.ev.sum())
        if self.d == 0:
            raise LegatoError("every run is censored: no failure to fit a survival model to")
        if np.unique(n_atoms[self.ev]).size < 2:
            raise LegatoError("failures at only one size: beta is not identifiable")
        self.sum_lt_ev = float(self.lt[self.ev].sum())
        self.sum_x_ev = float(self.x[self.ev].sum())

    def value_grad(self, beta: float, k: float) -> tuple[float, float, float]:
        """(ℓ, ∂ℓ/∂β, ∂ℓ/∂k)."""
        d = self.d
        lw = self.lt + beta * self.x  # [n] log w
        lse = _logsumexp(k * lw)
        p = np.exp(k * lw - lse)  # [n] softmax weights w^k / Σ w^k
        ll = d * math.log(k) + k * lw[self.ev].sum() - self.sum_lt_ev - d * (lse - math.log(d)) - d
        g_beta = k * self.sum_x_ev - d * k * float(p @ self.x)
        g_k = d / k + lw[self.ev].sum() - d * float(p @ lw)
        return float(ll), float(g_beta), float(g_k)

    def hessian(self, beta: float, k: float) -> tuple[float, float, float]:
        """(∂²ℓ/∂β², ∂²ℓ/∂β∂k, ∂²ℓ/∂k²)."""
        d = self.d
        lw = self.lt + beta * self.x
        u = k * lw
        p = np.exp(u - _logsumexp(u))  # [n]
        ex, elw = float(p @ self.x), float(p @ lw)
        var_x = float(p @ (self.x - ex) ** 2)
        var_lw = float(p @ (lw - elw) ** 2)
        cov = float(p @ ((self.x - ex) * (lw - elw)))
        return (
            -d * k * k * var_x,
            self.sum_x_ev - d * ex - d * k * cov,
            -d / (k * k) - d * var_lw,
        )

    def log_scale(self, beta: float, k: float) -> float:
        """log a with λ(N) = a·N^(−β) (uncentred)."""
        lw = self.lt + beta * self.x
        log_c = (_logsumexp(k * lw) - math.log(self.d)) / k
        return log_c + beta * self.x0

    def best_k(self, beta: float) -> float:
        """argmax_k ℓ(β, k) (ℓ is concave in k); a root of ∂ℓ/∂k in log k."""

        def g(logk: float) -> float:
            return self.value_grad(beta, math.exp(logk))[2]

        lo, hi = -1.0, 1.0
        while g(lo) < 0 and lo > -12:
            lo -= 2.0
        while g(hi) > 0 and hi < 12:
            hi += 2.0
        if g(lo) < 0:
            return math.exp(lo)
        if g(hi) > 0:
            return math.exp(hi)
        return math.exp(optimize.brentq(g, lo, hi, xtol=1e-12))

    def best_beta(self, k: float, start: float = 0.0) -> float:
        """argmax_β ℓ(β, k) (ℓ is concave in β); a root of ∂ℓ/∂β."""

        def g(b: float) -> float:
            return self.value_grad(b, k)[1]

        step = 1.0
        lo, hi = start - step, start + step
        while g(lo) < 0 and lo > start - 1e3:
            step *= 2
            lo = start - step
        step = 1.0
        while g(hi) > 0 and hi < start + 1e3:
            step *= 2
            hi = start + step
        if g(lo) < 0 or g(hi) > 0:
            raise LegatoError("survival fit: beta is not identifiable from these data")
        return optimize.brentq(g, lo, hi, xtol=1e-12)


def _profile_interval(
    profile: Callable[[float], float],
    mle: float,
    ll_max: float,
    confidence: float,
    positive: bool = False,
) -> tuple[float, float]:
    """Interval {θ : 2(ℓ_max − ℓ_p(θ)) ≤ χ²_1(confidence)}; ±inf if it does not close."""
    target = ll_max - 0.5 * float(stats.chi2.ppf(confidence, df=1))

    def g(th: float) -> float:
        return profile(th) - target

    out = []
    for sign in (-1.0, 1.0):
        if positive:  # search in log θ
            base, step = math.log(mle), 0.1
            while True:
                trial = base + sign * step
                if g(math.exp(trial)) < 0:
                    root = optimize.brentq(
                        lambda u: g(math.exp(u)), min(base, trial), max(base, trial), xtol=1e-10
                    )
                    out.append(math.exp(root))
                    break
                if step > 20:
                    out.append(0.0 if sign < 0 else math.inf)
                    break
                base, step = trial, step * 2
        else:
            base, step = mle, 0.05
            while True:
                trial = base + sign * step
                if g(trial) < 0:
                    out.append(optimize.brentq(g, min(base, trial), max(base, trial), xtol=1e-10))
                    break
                if step > 100:
                    out.append(sign * math.inf)
                    break
                base, step = trial, step * 2
    return out[0], out[1]


def _mle(prof: _WeibullProfile, shape: float | None) -> tuple[float, float, float]:
    """(β̂, k̂, ℓ̂). Fixed shape: 1-D root of ∂ℓ/∂β. Free shape: damped Newton in (β, log k)
    with backtracking, falling back to coordinate ascent (alternating concave 1-D
    maximisations) if it does not converge."""
    if shape is not None:
        beta = prof.best_beta(shape)
        return beta, shape, prof.value_grad(beta, shape)[0]
    p = np.array([prof.best_beta(1.0), 0.0])  # (β, log k)
    ll = prof.value_grad(p[0], 1.0)[0]
    converged = False
    for _ in range(100):
        k = math.exp(p[1])
        _, gb, gk = prof.value_grad(p[0], k)
        g = np.array([gb, gk * k])
        h_bb, h_bk, h_kk = prof.hessian(p[0], k)
        h = np.array([[h_bb, h_bk * k], [h_bk * k, h_kk * k * k + gk * k]])
        if np.all(np.linalg.eigvalsh(h) < 0):
            step = -np.linalg.solve(h, g)
        else:
            step = g / (np.abs(g).max() + 1.0)
        if np.abs(step).max() < 1e-11:
            converged = True
            break
        for _ in range(60):
            trial = p + step
            ll_trial = prof.value_grad(trial[0], math.exp(trial[1]))[0]
            if math.isfinite(ll_trial) and ll_trial >= ll - 1e-12 * abs(ll):
                break
            step = step / 2
        else:
            break
        p, ll = trial, ll_trial
    beta, k = float(p[0]), math.exp(float(p[1]))
    if not converged:
        beta, k = prof.best_beta(1.0), 1.0
        for _ in range(100):
            k_new = prof.best_k(beta)
            beta_new = prof.best_beta(k_new, start=beta)
            done = abs(beta_new - beta) < 1e-10 and abs(k_new - k) < 1e-10 * k
            beta, k = beta_new, k_new
            if done:
                break
    return beta, k, prof.value_grad(beta, k)[0]


def weibull_mle(
    n_atoms: np.ndarray, t: np.ndarray, censored: np.ndarray, shape: float | None = None
) -> tuple[float, float]:
    """(β̂, k̂) of :func:`fit_weibull` without intervals (for resampling loops)."""
    n_atoms, t, censored = _prepare(n_atoms, t, censored)
    if censored.all():
        raise LegatoError("every run is censored: the Weibull fit has no maximum")
    beta, k, _ = _mle(_WeibullProfile(n_atoms, t, censored), shape)
    return beta, k


def fit_weibull(
    n_atoms: np.ndarray,
    t: np.ndarray,
    censored: np.ndarray | None = None,
    shape: float | None = None,
    confidence: float = 0.95,
    ci: str = "profile",
    n_boot: int = 1000,
    seed: int = 0,
    time_unit: str = "steps",
) -> ScalingFit:
    """Maximum-likelihood Weibull fit with scale λ(N) = a·N^(−β) and a shared shape k.

    ``shape=None`` fits k; ``shape=1.0`` is the exponential model. ``ci`` is "profile"
    (profile likelihood for β and k) or "bootstrap" (percentile, instances resampled within
    each size). Censored runs contribute their survival probability S(t).
    """
    n_atoms, t, censored = _prepare(n_atoms, t, censored)
    _check_confidence(confidence)
    if shape is not None and not shape > 0:
        raise LegatoError(f"Weibull shape must be positive, got {shape}")
    if ci not in ("profile", "bootstrap"):
        raise LegatoError(f"unknown CI method {ci!r} (profile or bootstrap)")
    prof = _WeibullProfile(n_atoms, t, censored)
    beta, k, ll = _mle(prof, shape)
    log_a = prof.log_scale(beta, k)
    if ci == "profile":
        if shape is None:
            beta_ci = _profile_interval(lambda b: prof.value_grad(b, prof.best_k(b))[0], beta, ll, confidence)
            shape_ci = _profile_interval(
                lambda kk: prof.value_grad(prof.best_beta(kk, start=beta), kk)[0],
                k,
                ll,
                confidence,
                positive=True,
            )
        else:
            beta_ci = _profile_interval(lambda b: prof.value_grad(b, shape)[0], beta, ll, confidence)
            shape_ci = (shape, shape)
        ci_name, boot, boot_seed = "profile-likelihood", None, None
    else:
        if n_boot < 2:
            raise LegatoError("n_boot must be >= 2")
        rng = np.random.default_rng(seed)
        groups = [np.nonzero(n_atoms == s)[0] for s in np.unique(n_atoms)]
        betas, shapes = [], []
        for _ in range(n_boot):
            idx = np.concatenate([g[rng.integers(0, g.size, g.size)] for g in groups])
            if censored[idx].all():
                continue
            try:
                b_b, k_b, _ = _mle(_WeibullProfile(n_atoms[idx], t[idx], censored[idx]), shape)
            except LegatoError:
                continue
            betas.append(b_b)
            shapes.append(k_b)
        if len(betas) < max(2, n_boot // 2):
            raise LegatoError("bootstrap: too few resamples could be fitted")
        q = 100.0 * np.array([(1 - confidence) / 2, (1 + confidence) / 2])
        beta_ci = tuple(float(v) for v in np.percentile(betas, q))
        shape_ci = tuple(float(v) for v in np.percentile(shapes, q))
        ci_name, boot, boot_seed = "bootstrap", n_boot, seed
    return ScalingFit(
        method="exponential" if shape == 1.0 else "weibull",
        beta=float(beta),
        beta_ci=(float(beta_ci[0]), float(beta_ci[1])),
        alpha=float(math.exp(log_a) * special.gamma(1.0 + 1.0 / k)),
        n=int(t.size),
        n_censored=int(censored.sum()),
        sizes=tuple(int(s) for s in np.unique(n_atoms)),
        confidence=confidence,
        ci_method=ci_name,
        time_unit=time_unit,
        shape=float(k),
        shape_ci=(float(shape_ci[0]), float(shape_ci[1])),
        scale_alpha=float(math.exp(log_a)),
        log_likelihood=float(ll),
        n_boot=boot,
        seed=boot_seed,
    )


# -- per-size statistics and the whole-table analysis ---------------------------------------
def size_summaries(
    n_atoms: np.ndarray,
    t: np.ndarray,
    censored: np.ndarray | None = None,
    confidence: float = 0.95,
) -> list[SizeSummary]:
    """Mean ± s.e. (naive) and Kaplan–Meier median with CI, per size."""
    n_atoms = np.asarray(n_atoms).ravel()
    t = np.asarray(t, dtype=float).ravel()
    censored = np.zeros(t.shape, bool) if censored is None else np.asarray(censored, bool)
    out = []
    for s in np.unique(n_atoms):
        m = n_atoms == s
        ts, cs = t[m], censored[m]
        km = kaplan_meier(ts, cs, confidence=confidence)
        sem = float(ts.std(ddof=1) / math.sqrt(ts.size)) if ts.size > 1 else math.nan
        out.append(
            SizeSummary(
                n_atoms=int(s),
                n=int(ts.size),
                n_censored=int(cs.sum()),
                mean=float(ts.mean()),
                sem=sem,
                median=km.median(),
                median_ci=km.median_ci(),
            )
        )
    return out


@dataclass
class ModelScaling:
    """Everything ``legato scaling`` reports for one model label."""

    model: str
    time_unit: str
    sizes: list[SizeSummary]
    fits: dict[str, ScalingFit]  # by method name
    notes: list[str]  # why a fit is missing, if it is
    confidence: float = 0.95


def analyse_table(
    table: FailureTable,
    time_unit: str = "steps",
    n_boot: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
    weibull_ci: str = "profile",
) -> list[ModelScaling]:
    """Per-size summaries and the means / Weibull / exponential fits for every model."""
    results = []
    for model in table.models():
        n, t, c = table.select(model).arrays(time_unit)
        res = ModelScaling(model, time_unit, size_summaries(n, t, c, confidence), {}, [], confidence)
        attempts: dict[str, Callable[[], ScalingFit]] = {
            "means": lambda n=n, t=t, c=c: fit_means(
                n, t, c, n_boot=n_boot, seed=seed, confidence=confidence, time_unit=time_unit
            ),
            "weibull": lambda n=n, t=t, c=c: fit_weibull(
                n, t, c, confidence=confidence, ci=weibull_ci, n_boot=n_boot, seed=seed, time_unit=time_unit
            ),
            "exponential": lambda n=n, t=t, c=c: fit_weibull(
                n,
                t,
                c,
                shape=1.0,
                confidence=confidence,
                ci=weibull_ci,
                n_boot=n_boot,
                seed=seed,
                time_unit=time_unit,
            ),
        }
        for name, attempt in attempts.items():
            try:
                res.fits[name] = attempt()
            except LegatoError as exc:
                res.notes.append(f"{name}: {exc}")
        results.append(res)
    return results


# ----------------------------------------------------------------------------- verdicts
NOT_RESOLVED = "not resolved at this size"


def _interval(e: dict, z: float) -> tuple[float, float]:
    """mean ± z·s.e. of an ensemble summary (unbounded when the s.e. is unknown)."""
    sem = e["sem"]
    if sem is None or not math.isfinite(sem):
        return -math.inf, math.inf
    return e["mean"] - z * sem, e["mean"] + z * sem


def tfail_verdict(allegro: dict, legato: dict, confidence: float = 0.95) -> tuple[bool, str]:
    """(resolved in the paper's direction, verdict) for the mean t_failure of the two models
    at one size: resolved only if Legato's mean is higher and the intervals are disjoint."""
    from statistics import NormalDist

    z = NormalDist().inv_cdf((1 + confidence) / 2)
    (a_lo, a_hi), (l_lo, l_hi) = _interval(allegro, z), _interval(legato, z)
    pct = f"{confidence:.0%}"
    if legato["mean"] > allegro["mean"] and l_lo > a_hi:
        return True, f"Legato lasts longer, {pct} intervals disjoint (the paper's direction)"
    if legato["mean"] < allegro["mean"] and l_hi < a_lo:
        return (
            False,
            f"{NOT_RESOLVED}: Legato fails earlier, {pct} intervals disjoint (opposite to the paper)",
        )
    side = "higher" if legato["mean"] > allegro["mean"] else "not higher"
    return False, f"{NOT_RESOLVED}: Legato's mean is {side} and the {pct} intervals overlap"


def beta_verdict(allegro: tuple[float, list], legato: tuple[float, list]) -> tuple[bool, str]:
    """(resolved in the paper's direction, verdict) for β_Legato < β_Allegro, both > 0."""
    (ba, (a_lo, a_hi)), (bl, (l_lo, l_hi)) = allegro, legato
    if ba <= 0 or bl <= 0:
        return False, f"{NOT_RESOLVED}: β ≤ 0 means t_failure did not fall with N"
    if bl < ba and l_hi < a_lo:
        return True, "holds: β_Legato < β_Allegro, CIs disjoint"
    if bl > ba and l_lo > a_hi:
        return False, f"{NOT_RESOLVED}: β_Legato > β_Allegro, CIs disjoint (opposite to the paper)"
    side = "same direction as the paper" if bl < ba else "β_Legato ≥ β_Allegro"
    return False, f"{NOT_RESOLVED}: {side}, but the CIs overlap"
