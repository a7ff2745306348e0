"""Failure rates per atom and time: what a study can say when most runs reach their budget.

If failures are rare, local events (the paper's picture: one bad force that cascades), the
number of failures in an ensemble is Poisson with mean ``rate × exposure``, where the exposure
is the sum over runs of ``n_atoms × time survived`` (a failed run counts up to its failure, a
censored run up to its budget). Then t_failure ∝ N^-β with β = 1, and the rate per atom does
not depend on N; a rate per atom that falls with N means β < 1. Exact (Garwood) intervals hold
for any count, zero included, which is what a mean time or a Weibull fit cannot offer.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats

from legato.errors import LegatoError
from legato.stats.hierarchical import Interval


def exposure(n_atoms: int, times: Sequence[float]) -> float:
    """Atom × time units of an ensemble of ``n_atoms``-atom runs that lasted ``times``."""
    t = np.asarray(times, dtype=float)
    if n_atoms <= 0 or t.size == 0 or (t < 0).any() or not np.isfinite(t).all():
        raise LegatoError("exposure needs n_atoms > 0 and finite, non-negative run times")
    return float(n_atoms * t.sum())


def _check(events: int, expo: float, confidence: float) -> None:
    if events < 0 or not expo > 0:
        raise LegatoError(f"a rate needs events >= 0 and exposure > 0 (got {events}, {expo})")
    if not 0 < confidence < 1:
        raise LegatoError(f"confidence must lie in (0, 1), got {confidence}")


def poisson_rate(events: int, expo: float, confidence: float = 0.95) -> Interval:
    """Rate ``events / expo`` with the exact two-sided (Garwood) interval; for 0 events the
    lower end is 0 and the upper end is ``-ln(alpha/2) / expo``."""
    _check(events, expo, confidence)
    alpha = 1.0 - confidence
    lo = 0.0 if events == 0 else stats.chi2.ppf(alpha / 2, 2 * events) / 2.0
    hi = stats.chi2.ppf(1.0 - alpha / 2, 2 * events + 2) / 2.0
    return Interval(events / expo, float(lo / expo), float(hi / expo), confidence)


def rate_ratio(
    events_a: int, expo_a: float, events_b: int, expo_b: float, confidence: float = 0.95
) -> tuple[Interval, float]:
    """Rate of ``b`` over rate of ``a``, exact conditional interval, and the one-sided p-value
    of "b fails less often than a" (given the total count, b's count is binomial with success
    probability ``expo_b / (expo_a + expo_b)`` when the rates are equal).

    With no failure in either ensemble the ratio is undefined: value nan, interval [0, inf],
    p = 1.
    """
    _check(events_a, expo_a, confidence)
    _check(events_b, expo_b, confidence)
    n, alpha = events_a + events_b, 1.0 - confidence
    p_value = float(stats.binom.cdf(events_b, n, expo_b / (expo_a + expo_b))) if n else 1.0
    if n == 0:
        return Interval(float("nan"), 0.0, float("inf"), confidence), p_value
    # Clopper-Pearson interval of b's share of the failures, mapped to the rate ratio
    q_lo = 0.0 if events_b == 0 else stats.beta.ppf(alpha / 2, events_b, events_a + 1)
    q_hi = 1.0 if events_a == 0 else stats.beta.ppf(1 - alpha / 2, events_b + 1, events_a)
    scale = expo_a / expo_b

    def ratio(q: float) -> float:
        return float("inf") if q >= 1.0 else float(q / (1.0 - q) * scale)

    value = float("inf") if events_a == 0 else events_b / expo_b / (events_a / expo_a)
    return Interval(value, ratio(q_lo), ratio(q_hi), confidence), p_value
