"""Kaplan–Meier survival estimate with Greenwood confidence intervals.

Input: times ``t`` [n] (failure time, or the time a run was stopped alive) and ``censored``
[n] (True = stopped alive). At each distinct failure time t_j with n_j runs at risk
(time ≥ t_j; a run censored at t_j counts as at risk there) and d_j failures,

    S(t) = Π_{t_j ≤ t} (1 − d_j / n_j),
    Var[S(t)] ≈ S(t)² Σ_{t_j ≤ t} d_j / (n_j (n_j − d_j))        (Greenwood).

Confidence bands use the log(−log S) transform by default (they stay inside [0, 1]);
``transform="plain"`` gives S ± z·se clipped to [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from legato.errors import LegatoError


@dataclass(frozen=True)
class KaplanMeier:
    """A Kaplan–Meier curve. Arrays are indexed by distinct failure time [m]."""

    times: np.ndarray  # [m] distinct failure times, increasing
    n_at_risk: np.ndarray  # [m]
    n_events: np.ndarray  # [m]
    survival: np.ndarray  # [m] S just after each time
    se: np.ndarray  # [m] Greenwood standard error of S
    lower: np.ndarray  # [m] lower confidence band
    upper: np.ndarray  # [m] upper confidence band
    censor_times: np.ndarray  # [n_censored] times of censored runs
    n: int
    confidence: float

    def _index(self, t: np.ndarray) -> np.ndarray:
        # number of failure times <= t, i.e. index+1 of the current step
        return np.searchsorted(self.times, t, side="right")

    def survival_at(self, t: float | np.ndarray) -> np.ndarray:
        """S(t) as a right-continuous step function; S = 1 before the first failure."""
        t = np.asarray(t, dtype=float)
        s = np.concatenate([[1.0], self.survival])
        return s[self._index(t)]

    def band_at(self, t: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(lower, upper) confidence band at times t."""
        t = np.asarray(t, dtype=float)
        i = self._index(t)
        return np.concatenate([[1.0], self.lower])[i], np.concatenate([[1.0], self.upper])[i]

    @staticmethod
    def _first_below_half(times: np.ndarray, curve: np.ndarray) -> float:
        below = np.nonzero(curve <= 0.5)[0]
        return float(times[below[0]]) if below.size else float("inf")

    def median(self) -> float:
        """Smallest t with S(t) ≤ 0.5 (inf if the curve never gets there)."""
        return self._first_below_half(self.times, self.survival)

    def median_ci(self) -> tuple[float, float]:
        """Confidence interval of the median: the times at which the lower and the upper
        band first reach 0.5 (Brookmeyer–Crowley style; inf = not reached)."""
        return (
            self._first_below_half(self.times, self.lower),
            self._first_below_half(self.times, self.upper),
        )

    def step_curve(self, t_end: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) vertices for drawing S(t) as steps from (0, 1), ``where='post'``."""
        x = np.concatenate([[0.0], self.times])
        y = np.concatenate([[1.0], self.survival])
        last = max(
            float(self.times[-1]) if self.times.size else 0.0,
            float(self.censor_times.max()) if self.censor_times.size else 0.0,
        )
        if t_end is None:
            t_end = last
        if t_end > x[-1]:
            x = np.append(x, t_end)
            y = np.append(y, y[-1])
        return x, y


def kaplan_meier(
    t: np.ndarray,
    censored: np.ndarray | None = None,
    confidence: float = 0.95,
    transform: str = "log-log",
) -> KaplanMeier:
    """Kaplan–Meier estimate from times ``t`` [n] and censoring flags ``censored`` [n]."""
    t = np.asarray(t, dtype=float).ravel()
    censored = np.zeros(t.shape, dtype=bool) if censored is None else np.asarray(censored, bool).ravel()
    if t.size == 0:
        raise LegatoError("Kaplan-Meier: no data")
    if censored.shape != t.shape:
        raise LegatoError("Kaplan-Meier: times and censoring flags differ in length")
    if not np.all(np.isfinite(t)) or np.any(t < 0):
        raise LegatoError("Kaplan-Meier: times must be finite and >= 0")
    if not 0.0 < confidence < 1.0:
        raise LegatoError(f"confidence must be in (0, 1), got {confidence}")
    if transform not in ("log-log", "plain"):
        raise LegatoError(f"unknown confidence transform {transform!r} (log-log or plain)")

    event = ~censored
    times = np.unique(t[event])  # [m]
    n_at_risk = np.array([(t >= tj).sum() for tj in times], dtype=np.int64)  # [m]
    n_events = np.array([(event & (t == tj)).sum() for tj in times], dtype=np.int64)  # [m]
    factors = 1.0 - n_events / n_at_risk
    surv = np.cumprod(factors)  # [m]
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = n_events / (n_at_risk * (n_at_risk - n_events))  # inf when all at risk fail
    gw = np.cumsum(terms)  # [m] Greenwood sum
    with np.errstate(invalid="ignore"):
        se = np.where(surv == 0.0, 0.0, surv * np.sqrt(gw))
    z = float(stats.norm.ppf(0.5 + confidence / 2.0))
    if transform == "plain":
        lower = np.clip(surv - z * se, 0.0, 1.0)
        upper = np.clip(surv + z * se, 0.0, 1.0)
    else:
        lower = np.zeros_like(surv)
        upper = np.zeros_like(surv)
        inside = (surv > 0.0) & (surv < 1.0)
        s_in = surv[inside]
        # se of log(-log S) by the delta method: sqrt(gw) / |log S|
        w = z * np.sqrt(gw[inside]) / np.abs(np.log(s_in))
        lower[inside] = s_in ** np.exp(w)
        upper[inside] = s_in ** np.exp(-w)
        lower[surv >= 1.0] = upper[surv >= 1.0] = 1.0
    return KaplanMeier(
        times=times,
        n_at_risk=n_at_risk,
        n_events=n_events,
        survival=surv,
        se=se,
        lower=lower,
        upper=upper,
        censor_times=np.sort(t[censored]),
        n=int(t.size),
        confidence=confidence,
    )
