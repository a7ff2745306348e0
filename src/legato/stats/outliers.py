"""Force-outlier counts during MD (the paper's Fig. 1), reduced to numbers that tell its
failure mode from global heating.

The paper's picture: an Allegro run collects a growing number of atoms with unphysically
large forces (> 5σ of the training forces) until a cascade ends it, while an
Allegro-Legato run keeps the count flat. Per run we keep the mean count over the first and
last quarter of the NVE checks and the count at the last check (for a failed run, the one
at which it failed); per ensemble, the ratio of the late to the early mean and the share of
runs whose count grew. Counts are per 1,000 atoms so that sizes compare. Pure functions.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from legato.errors import LegatoError


def run_outlier_summary(nve_steps: np.ndarray, counts: np.ndarray, n_atoms: int) -> dict[str, float]:
    """One run's outlier history (checks with ``nve_step >= 0``) as early/late/final counts
    per 1,000 atoms. ``nve_steps`` and ``counts``: [n_checks]."""
    nve_steps, counts = np.asarray(nve_steps, float), np.asarray(counts, float)
    if nve_steps.shape != counts.shape:
        raise LegatoError("outlier steps and counts differ in length")
    keep = nve_steps >= 0
    steps, c = nve_steps[keep], counts[keep] * 1000.0 / n_atoms
    if c.size == 0:
        return {"checks": 0, "early": float("nan"), "late": float("nan"), "final": float("nan")}
    order = np.argsort(steps, kind="stable")
    c = c[order]
    q = max(1, c.size // 4)
    return {
        "checks": int(c.size),
        "early": float(c[:q].mean()),
        "late": float(c[-q:].mean()),
        "final": float(c[-1]),
    }


def outlier_growth(summaries: Sequence[dict[str, float]]) -> dict[str, float]:
    """Ensemble of run summaries (runs with at least 4 NVE checks) -> mean early, late and
    final counts per 1,000 atoms, late/early ratio of the means and the share of runs whose
    late mean exceeds their early mean."""
    runs = [s for s in summaries if s["checks"] >= 4]
    if not runs:
        return {"runs": 0}
    early = np.array([s["early"] for s in runs])
    late = np.array([s["late"] for s in runs])
    final = np.array([s["final"] for s in runs])
    return {
        "runs": len(runs),
        "early": float(early.mean()),
        "late": float(late.mean()),
        "final": float(final.mean()),
        "late_over_early": float(late.mean() / early.mean()) if early.mean() > 0 else float("nan"),
        "share_grown": float(np.mean(late > early)),
    }
