"""Figures of the robustness study (PNG, matplotlib without pyplot, i.e. no GUI backend).

* :func:`plot_scaling` — paper Fig. 2: t_failure vs N on log–log axes, per model the
  mean ± s.e. with the means fit and the Kaplan–Meier median (with CI) with the Weibull fit.
* :func:`plot_survival` — Kaplan–Meier survival curves, one panel per model, one curve
  (with confidence band, ``+`` = censored run) per size.
* :func:`plot_outliers` — paper Fig. 1: force-outlier count vs MD step from a CSV with
  columns ``step, outliers, model`` (optional ``run`` separates several runs of a model;
  ``legato md``'s ``checks.csv`` names ``n_force_outliers`` and ``replica`` are accepted).
"""

from __future__ import annotations

import csv
import math
import os
import tempfile
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from legato.analysis.failures import FailureTable
from legato.analysis.scaling import ModelScaling
from legato.analysis.survival import kaplan_meier
from legato.errors import LegatoError

_COLORS = [
    "#d62728",
    "#1f77b4",
    "#2ca02c",
    "#9467bd",
    "#ff7f0e",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
]


def _save(fig: Figure, path: str | os.PathLike, overwrite: bool) -> Path:
    """Save a figure as PNG through a temporary file and an atomic rename."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise LegatoError(f"{path} exists; refusing to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, format="png", dpi=150)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _fmt_ci(beta: float, ci: tuple[float, float]) -> str:
    return f"β={beta:.2f} [{ci[0]:.2f}, {ci[1]:.2f}]"


def plot_scaling(
    results: list[ModelScaling],
    path: str | os.PathLike,
    title: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Fig. 2: t_failure vs N (log–log) for several models with both fits."""
    if not results:
        raise LegatoError("nothing to plot: no models")
    fig = Figure(figsize=(7.5, 5.2))
    ax = fig.add_subplot(1, 1, 1)
    all_n = [s.n_atoms for r in results for s in r.sizes]
    n_line = np.geomspace(min(all_n) / 1.3, max(all_n) * 1.3, 100)  # [100]
    for i, res in enumerate(results):
        color = _COLORS[i % len(_COLORS)]
        n = np.array([s.n_atoms for s in res.sizes], dtype=float)
        mean = np.array([s.mean for s in res.sizes])
        sem = np.nan_to_num(np.array([s.sem for s in res.sizes]))
        ax.errorbar(
            n, mean, yerr=sem, fmt="o", color=color, capsize=3, ms=6, label=f"{res.model}: mean ± s.e."
        )
        # KM medians; an unreached median (inf) is not drawn, an open upper limit is capped
        t_max = max(float(np.max(mean)), 1.0) * 3.0
        med = np.array([s.median for s in res.sizes])
        lo = np.array([s.median_ci[0] for s in res.sizes])
        hi = np.array([min(s.median_ci[1], t_max) for s in res.sizes])
        ok = np.isfinite(med)
        if ok.any():
            ax.errorbar(
                n[ok] * 1.06,
                med[ok],
                yerr=[med[ok] - lo[ok], hi[ok] - med[ok]],
                fmt="s",
                mfc="white",
                color=color,
                capsize=3,
                ms=5,
                label=f"{res.model}: KM median ({res.confidence:.0%} CI)",
            )
        fm = res.fits.get("means")
        if fm is not None:
            ax.plot(
                n_line,
                fm.mean_at(n_line),
                "--",
                color=color,
                lw=1.2,
                label=f"{res.model}: means fit, {_fmt_ci(fm.beta, fm.beta_ci)}",
            )
        fw = res.fits.get("weibull")
        if fw is not None:
            ax.plot(
                n_line,
                fw.median_at(n_line),
                "-",
                color=color,
                lw=1.6,
                label=f"{res.model}: Weibull fit (median), {_fmt_ci(fw.beta, fw.beta_ci)}",
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("N (atoms)")
    ax.set_ylabel(f"t_failure ({results[0].time_unit})")
    ax.set_title(title or "Fidelity scaling: t_failure = α·N^(−β)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return _save(fig, path, overwrite)


def plot_survival(
    table: FailureTable,
    path: str | os.PathLike,
    time_unit: str = "steps",
    confidence: float = 0.95,
    overwrite: bool = False,
) -> Path:
    """Kaplan–Meier curves per size, one panel per model."""
    models = table.models()
    if not models:
        raise LegatoError("nothing to plot: empty failure table")
    sizes = table.sizes()
    cmap_vals = np.linspace(0.0, 0.85, max(len(sizes), 2))
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    ncol = min(len(models), 3)
    nrow = math.ceil(len(models) / ncol)
    fig = Figure(figsize=(4.6 * ncol, 3.6 * nrow))
    for i, model in enumerate(models):
        ax = fig.add_subplot(nrow, ncol, i + 1)
        sub = table.select(model)
        for j, size in enumerate(sizes):
            if size not in sub.sizes():
                continue
            n, t, c = sub.select(n_atoms=size).arrays(time_unit)
            km = kaplan_meier(t, c, confidence=confidence)
            color = cmap(cmap_vals[j])
            x, y = km.step_curve()
            ax.step(
                x, y, where="post", color=color, lw=1.5, label=f"N={size} ({int(c.sum())}/{t.size} cens.)"
            )
            xb = np.concatenate([[0.0], km.times])
            lo = np.concatenate([[1.0], km.lower])
            hi = np.concatenate([[1.0], km.upper])
            if x.size > xb.size:  # extend the band to the last censoring time
                xb, lo, hi = np.append(xb, x[-1]), np.append(lo, lo[-1]), np.append(hi, hi[-1])
            ax.fill_between(xb, lo, hi, step="post", color=color, alpha=0.15, lw=0)
            if km.censor_times.size:
                ax.plot(km.censor_times, km.survival_at(km.censor_times), "+", color=color, ms=8, mew=1.5)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlim(left=0.0)
        ax.set_xlabel(f"t ({time_unit})")
        ax.set_ylabel("fraction of runs alive")
        ax.set_title(f"{model}: Kaplan–Meier ({int(round(confidence * 100))}% CI)", fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path, overwrite)


def read_outlier_csv(path: str | os.PathLike) -> dict[tuple[str, str], tuple[np.ndarray, ...]]:
    """Read ``step, outliers, model[, run]`` rows into {(model, run): (step [m], count [m])}
    with steps sorted."""
    path = Path(path)
    if not path.is_file():
        raise LegatoError(f"outlier file {path} not found")
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        # legato md's checks.csv names: n_force_outliers, replica
        col_out = "outliers" if "outliers" in header else "n_force_outliers"
        col_run = "run" if "run" in header else "replica"
        missing = [c for c in ("step", col_out, "model") if c not in header]
        if missing:
            raise LegatoError(
                f"{path}: missing column(s) {', '.join(missing)} (need step, outliers, model[, run])"
            )
        runs: dict[tuple[str, str], list[tuple[int, float]]] = {}
        for lineno, row in enumerate(reader, start=2):
            try:
                step, count = int(row["step"]), float(row[col_out])
            except (TypeError, ValueError):
                raise LegatoError(f"{path}, line {lineno}: step/outliers must be numbers") from None
            runs.setdefault((row["model"], row.get(col_run) or ""), []).append((step, count))
    if not runs:
        raise LegatoError(f"{path}: no data rows")
    out = {}
    for key, pts in runs.items():
        pts.sort()
        arr = np.array(pts, dtype=float)  # [m, 2]
        out[key] = (arr[:, 0], arr[:, 1])
    return out


def plot_outliers(
    csv_path: str | os.PathLike,
    path: str | os.PathLike,
    sigma: float | None = 5.0,
    overwrite: bool = False,
) -> Path:
    """Fig. 1: force-outlier count vs MD step, one colour per model, one line per run."""
    runs = read_outlier_csv(csv_path)
    models = list(dict.fromkeys(m for m, _ in runs))
    fig = Figure(figsize=(7.0, 4.2))
    ax = fig.add_subplot(1, 1, 1)
    labelled: set[str] = set()
    for (model, _run), (step, count) in runs.items():
        i = models.index(model)
        ax.plot(
            step,
            count,
            "-",
            color=_COLORS[i % len(_COLORS)],
            lw=1.0,
            alpha=0.85,
            label=None if model in labelled else model,
        )
        labelled.add(model)
        ax.plot(step[-1:], count[-1:], "x", color=_COLORS[i % len(_COLORS)], ms=6)
    ax.set_xlabel("MD step")
    what = f"> {sigma:g}σ" if sigma is not None else "outliers"
    ax.set_ylabel(f"atoms with force component {what}")
    ax.set_title("Force outliers during MD (× = last recorded step)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path, overwrite)
