"""Figures of the robustness study (PNG, matplotlib without pyplot, i.e. no GUI backend).

* :func:`plot_scaling` — paper Fig. 2: t_failure vs N on log–log axes, per model the
  mean ± s.e. with the means fit and the Kaplan–Meier median (with CI) with the Weibull fit.
* :func:`plot_survival` — Kaplan–Meier survival curves, one panel per model, one curve
  (with confidence band, ``+`` = censored run) per size.
* :func:`plot_outliers` — paper Fig. 1: force-outlier count vs MD step from a CSV with
  columns ``step, outliers, model`` (optional ``run`` separates several runs of a model;
  ``legato md``'s ``checks.csv`` names ``n_force_outliers`` and ``replica`` are accepted).

Each ``plot_*`` saves a PNG; the ``*_figure`` functions build the same matplotlib Figure
without saving it. Time axes name their clock: ``legato tfail`` counts t_failure in NVE
steps (after the NVT equilibration); the study also fits on the NVT+NVE clock.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from legato.errors import LegatoError
from legato.fileio import atomic_save
from legato.stats.failures import FailureTable
from legato.stats.scaling import ModelScaling
from legato.stats.survival import kaplan_meier

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


def save_png(fig: Figure, path: str | os.PathLike, overwrite: bool) -> Path:
    """Save a figure as a 150-dpi PNG atomically (``legato.fileio.atomic_save``); an existing
    ``path`` is replaced only with ``overwrite``."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise LegatoError(f"{path} exists; refusing to overwrite it")
    atomic_save(path, lambda fh: fig.savefig(fh, format="png", dpi=150))
    return path


def clock_label(time_unit: str = "steps", clock: str | None = None) -> str:
    """The clock of a time axis: ``clock`` if given, else that of legato tfail tables."""
    if clock:
        return clock
    return "NVE steps" if time_unit == "steps" else f"NVE time, {time_unit}"


def log_ticks(lo: float, hi: float) -> list[float]:
    """Readable tick values for a log axis: 1-2-5 (or finer, for a short range) times powers
    of ten, from the largest at or below ``lo`` to the smallest at or above ``hi``."""
    if not (0 < lo <= hi and math.isfinite(hi)):
        raise LegatoError(f"log axis needs 0 < lo <= hi, got {lo}, {hi}")
    ratio = hi / lo
    if ratio >= 1000:
        subs: tuple[float, ...] = (1,)
    elif ratio >= 30:
        subs = (1, 2, 5)
    else:
        subs = (1, 2, 3, 5) if ratio >= 3 else (1, 1.5, 2, 3, 4, 5, 6, 8)
    k0, k1 = math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1
    cands = [m * 10.0**k for k in range(k0, k1 + 1) for m in subs]
    below = max(c for c in cands if c <= lo * (1 + 1e-12))
    above = min(c for c in cands if c >= hi * (1 - 1e-12))
    return [c for c in cands if below <= c <= above]


def _set_log_ticks(axis, values: np.ndarray) -> list[float]:
    """Log scale on ``axis`` (ax.xaxis / ax.yaxis) with labelled ticks spanning ``values``."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    v = values[np.isfinite(values) & (values > 0)]
    if v.size == 0:
        return []
    ticks = log_ticks(float(v.min()), float(v.max()))
    axis.set_major_locator(FixedLocator(ticks))
    axis.set_major_formatter(FuncFormatter(lambda x, _pos: f"{x:g}"))
    axis.set_minor_locator(NullLocator())
    return ticks


def _fmt_ci(beta: float, ci: tuple[float, float]) -> str:
    return f"β={beta:.2f} [{ci[0]:.2f}, {ci[1]:.2f}]"


def scaling_figure(results: list[ModelScaling], title: str | None = None, clock: str | None = None) -> Figure:
    """Fig. 2: t_failure vs N (log–log) for several models with both fits; the legend sits
    below the axes, off the error bars; labelled ticks span all the data."""
    if not results:
        raise LegatoError("nothing to plot: no models")
    fig = Figure(figsize=(7.5, 6.4), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    all_n = np.array([s.n_atoms for r in results for s in r.sizes], dtype=float)
    n_line = np.geomspace(all_n.min() / 1.3, all_n.max() * 1.3, 100)  # [100]
    y_data: list[np.ndarray] = []
    for i, res in enumerate(results):
        color = _COLORS[i % len(_COLORS)]
        n = np.array([s.n_atoms for s in res.sizes], dtype=float)
        mean = np.array([s.mean for s in res.sizes])
        sem = np.nan_to_num(np.array([s.sem for s in res.sizes]))
        ax.errorbar(
            n, mean, yerr=sem, fmt="o", color=color, capsize=3, ms=6, label=f"{res.model}: mean ± s.e."
        )
        y_data += [mean - sem, mean + sem]
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
            y_data += [lo[ok], hi[ok]]
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
    _set_log_ticks(ax.xaxis, all_n)
    ax.set_xlim(all_n.min() / 1.3, all_n.max() * 1.3)
    yt = _set_log_ticks(ax.yaxis, np.concatenate(y_data))
    if yt:
        ax.set_ylim(yt[0] / 1.08, yt[-1] * 1.08)
    ax.set_xlabel("N (atoms)")
    ax.set_ylabel(f"t_failure ({clock_label(results[0].time_unit, clock)})")
    ax.set_title(title or "Fidelity scaling: t_failure = α·N^(−β)")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, frameon=False)
    return fig


def plot_scaling(
    results: list[ModelScaling],
    path: str | os.PathLike,
    title: str | None = None,
    overwrite: bool = False,
    clock: str | None = None,
) -> Path:
    """Fig. 2 as a PNG (see :func:`scaling_figure`)."""
    return save_png(scaling_figure(results, title, clock), path, overwrite)


def plot_survival(
    table: FailureTable,
    path: str | os.PathLike,
    time_unit: str = "steps",
    confidence: float = 0.95,
    overwrite: bool = False,
    clock: str | None = None,
) -> Path:
    """Kaplan–Meier curves per size, one panel per model (time axis: ``clock``, see
    :func:`clock_label`)."""
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
        ax.set_xlabel(f"t ({clock_label(time_unit, clock)})")
        ax.set_ylabel("fraction of runs alive")
        ax.set_title(f"{model}: Kaplan–Meier ({int(round(confidence * 100))}% CI)", fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return save_png(fig, path, overwrite)


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


def outliers_figure(
    runs: dict[tuple[str, str], tuple[np.ndarray, ...]],
    sigma: float | None = 5.0,
    nvt_steps: int | None = None,
) -> Figure:
    """Fig. 1: force-outlier count vs MD step; colour = model, line style = run, one legend
    entry per run; the switch from NVT to NVE is marked when ``nvt_steps`` is given."""
    models = list(dict.fromkeys(m for m, _ in runs))
    styles = ["-", "--", ":", "-."]
    fig = Figure(figsize=(7.0, 4.8), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    k_of_model: dict[str, int] = {}
    for (model, run), (step, count) in runs.items():
        color = _COLORS[models.index(model) % len(_COLORS)]
        k = k_of_model[model] = k_of_model.get(model, -1) + 1
        label = f"{model}, run {run}" if run else model
        ax.plot(step, count, styles[k % len(styles)], color=color, lw=1.2, alpha=0.9, label=label)
        ax.plot(step[-1:], count[-1:], "x", color=color, ms=6, label="_nolegend_")
    if nvt_steps:
        ax.axvline(nvt_steps, color="grey", ls=":", lw=1, label="_nolegend_")
        ax.annotate(" NVT → NVE", (nvt_steps, 0.97), xycoords=("data", "axes fraction"), va="top", fontsize=7)
    from matplotlib.ticker import MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # counts of atoms
    ax.set_xlabel("MD step since the start of the run (NVT, then NVE)")
    if sigma is not None:
        ax.set_ylabel(f"atoms with a force component > {sigma:g}σ")
        caption = "σ = standard deviation of the training force components; × = last check"
    else:
        ax.set_ylabel("force outliers")
        caption = "× = last check"
    ax.set_title(f"Force outliers during MD (Fig. 1)\n{caption}", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
    return fig


def plot_outliers(
    csv_path: str | os.PathLike,
    path: str | os.PathLike,
    sigma: float | None = 5.0,
    overwrite: bool = False,
    nvt_steps: int | None = None,
) -> Path:
    """Fig. 1 from an outlier CSV as a PNG (see :func:`outliers_figure`)."""
    return save_png(outliers_figure(read_outlier_csv(csv_path), sigma, nvt_steps), path, overwrite)
