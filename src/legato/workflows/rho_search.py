"""SAM strength ρ versus time-to-failure at the base size (paper Table 1).

One Legato (SAM) model is trained per ρ (``legato.train``), then every model runs the same
seeded time-to-failure ensemble at the base size (``legato.workflows.tfail``). Each ρ is
scored by the mean t_failure with censored runs counted at the budget — which is the
restricted mean survival time up to the budget (the Kaplan–Meier area), so the score is
not biased by dropping censored runs — and by the Kaplan–Meier median with its CI. The best
ρ is the one with the largest mean, as in the paper.

This module holds the Table-1 rows, their formatting and figure; the search itself (training
and ensembles, resumable) is :func:`legato.workflows.study.run_rho_search`
(``legato rho-search CONFIG.yaml --rho ... --out DIR --resume``).
"""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from legato.errors import LegatoError
from legato.fileio import atomic_write_text
from legato.stats.failures import FailureTable
from legato.stats.survival import kaplan_meier
from legato.workflows.plots import save_png

#: the paper's Table 1 (N = 432, NVE steps)
PAPER_TABLE1 = {0.001: 4030, 0.0025: 6420, 0.005: 8480, 0.01: 4760, 0.025: 4210, 0.05: 3780}
ROW_COLUMNS = (
    "rho",
    "label",
    "n_atoms",
    "n",
    "failed",
    "censored",
    "nvt_failures",
    "mean",
    "sem",
    "median",
    "median_lo",
    "median_hi",
    "paper_t_failure",
)


def ensemble_summary(table: FailureTable, confidence: float = 0.95) -> dict:
    """Statistics of one model at one size (t in NVE steps): runs, failures (in NVT),
    censored runs, mean ± s.e. with censored runs at the budget (= restricted mean survival
    time) and the Kaplan–Meier median with its CI (inf = not reached)."""
    sizes = table.sizes()
    if len(sizes) != 1 or len(table.models()) != 1:
        raise LegatoError(f"expected one model at one size, got {table}")
    _, t, c = table.arrays("steps")
    stage = [r.extra.get("stage", "nve") for r in table]
    km = kaplan_meier(t, c, confidence=confidence)
    lo, hi = km.median_ci()
    return {
        "label": table.models()[0],
        "n_atoms": sizes[0],
        "n": int(t.size),
        "failed": int((~c).sum()),
        "censored": int(c.sum()),
        "nvt_failures": int(sum(s == "nvt" for s in stage)),
        "mean": float(t.mean()),
        "sem": float(t.std(ddof=1) / math.sqrt(t.size)) if t.size > 1 else math.nan,
        "median": km.median(),
        "median_lo": lo,
        "median_hi": hi,
    }


def rho_rows(tables: dict[float | None, FailureTable], confidence: float = 0.95) -> list[dict]:
    """One row per model (ρ = None: the Adam-trained Allegro reference), t in NVE steps."""
    rows = []
    for rho, table in tables.items():
        if len(table) == 0:
            raise LegatoError(f"no time-to-failure runs for rho={rho}")
        row = {"rho": rho, **ensemble_summary(table, confidence)}
        row["paper_t_failure"] = PAPER_TABLE1.get(rho) if rho is not None else None
        rows.append(row)
    return rows


def _fmt(x: float | None, nd: int = 0) -> str:
    if x is None:
        return ""
    if isinstance(x, float) and not math.isfinite(x):
        return "inf" if x > 0 else "nan"
    return f"{x:.{nd}f}"


def format_rho_markdown(rows: list[dict]) -> str:
    """Table 1 as markdown: ours at N0 next to the paper's at N = 432."""
    n0 = rows[0]["n_atoms"] if rows else 0
    lines = [
        f"| ρ | model | runs | failed / censored | mean t_failure ± s.e. (N = {n0}) "
        "| KM median [95 % CI] | paper (N = 432) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        rho = "Adam" if r["rho"] is None else f"{r['rho']:g}"
        lines.append(
            f"| {rho} | {r['label']} | {r['n']} | {r['failed']} / {r['censored']} | "
            f"{_fmt(r['mean'])} ± {_fmt(r['sem'])} | {_fmt(r['median'])} "
            f"[{_fmt(r['median_lo'])}, {_fmt(r['median_hi'])}] | "
            f"{r['paper_t_failure'] if r['paper_t_failure'] is not None else '—'} |"
        )
    return "\n".join(lines) + "\n"


def write_rho_table(
    rows: list[dict], csv_path: str | os.PathLike, md_path: str | os.PathLike | None = None
) -> None:
    """CSV (one row per model) and, optionally, the markdown table (replaced if present)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(ROW_COLUMNS), lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow(
            {
                k: ("" if r[k] is None else repr(r[k]) if isinstance(r[k], float) else r[k])
                for k in ROW_COLUMNS
            }
        )
    atomic_write_text(csv_path, buf.getvalue(), overwrite=True)
    if md_path is not None:
        atomic_write_text(md_path, format_rho_markdown(rows), overwrite=True)


def rho_figure(rows: list[dict], budget: int | None = None) -> Figure:
    """t_failure vs ρ (log axis, one labelled tick per ρ of the grid): mean ± s.e. and the
    KM median with its CI drawn beside it at the same ρ; Allegro as a band."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    fig = Figure(figsize=(6.4, 4.8), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    grid = sorted((r for r in rows if r["rho"] is not None), key=lambda r: r["rho"])
    if grid:
        x = np.array([r["rho"] for r in grid])
        mean = np.array([r["mean"] for r in grid])
        sem = np.nan_to_num(np.array([r["sem"] for r in grid]))
        ax.errorbar(
            x,
            mean,
            yerr=sem,
            fmt="o-" if len(grid) > 1 else "o",
            color="#1f77b4",
            capsize=3,
            label="Legato: mean ± s.e. (censored at budget)",
        )
        med = np.array([r["median"] for r in grid])
        ok = np.isfinite(med)
        if ok.any():
            top = budget if budget else float(np.nanmax(mean)) * 2
            lo = np.array([r["median_lo"] for r in grid])[ok]
            hi = np.minimum(np.array([r["median_hi"] for r in grid])[ok], top)
            ax.errorbar(
                x[ok] * 1.04,  # beside its ρ, well inside the gap to the next tick
                med[ok],
                yerr=[med[ok] - lo, np.maximum(hi - med[ok], 0)],
                fmt="s",
                mfc="white",
                color="#1f77b4",
                capsize=3,
                label="Legato: KM median (95% CI)",
            )
        ax.set_xscale("log")
        # one labelled tick per ρ; a lone ρ gets a factor-3 margin so that the median drawn
        # beside it cannot be read as a second ρ
        pad = 3.0 if len(grid) == 1 else 1.4
        ax.set_xlim(x.min() / pad, x.max() * pad)
        ax.xaxis.set_major_locator(FixedLocator(x.tolist()))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
        ax.xaxis.set_minor_locator(NullLocator())
    for r in rows:
        if r["rho"] is None:
            ax.axhline(r["mean"], color="#d62728", lw=1.2, label=f"{r['label']}: mean")
            if math.isfinite(r["sem"]):
                ax.axhspan(r["mean"] - r["sem"], r["mean"] + r["sem"], color="#d62728", alpha=0.15, lw=0)
    if budget and any(r["censored"] for r in rows):  # else it would only squash the data
        ax.axhline(budget, color="grey", ls=":", lw=1, label=f"budget ({budget} NVE steps)")
    n0 = rows[0]["n_atoms"] if rows else "?"
    ax.set_xlabel("SAM ρ")
    ax.set_ylabel("t_failure (NVE steps)")
    ax.set_title(f"SAM strength vs time-to-failure at N = {n0} (Table 1)")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, frameon=False)
    return fig


def plot_rho(rows: list[dict], path: str | os.PathLike, budget: int | None = None) -> Path:
    """Table 1's figure as a PNG (see :func:`rho_figure`); replaces ``path``."""
    return save_png(rho_figure(rows, budget), path, overwrite=True)
