"""Scaling report of failure tables: fits of t_failure = α·N^(−β) and their figures (paper Fig. 2).

:func:`run_scaling` reads one or more failure tables (CSV from ``legato tfail``), merges
them, and for every model label fits β by the paper's log–log fit of means (bootstrap CI)
and by Weibull / exponential maximum likelihood that accounts for censored runs. It writes
``scaling_fits.json``, ``scaling_fits.csv``, ``sizes.csv``, ``fig2_scaling.png``,
``survival.png`` (and ``fig1_outliers.png`` given an outlier table) into ``out`` and returns
a :class:`ScalingReport`. ``legato scaling`` prints its text; the study calls it directly.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from legato.errors import LegatoError
from legato.fileio import atomic_write_text
from legato.stats.failures import FailureTable, merge_tables, read_failure_table
from legato.stats.scaling import ModelScaling, analyse_table
from legato.workflows.plots import plot_outliers, plot_scaling, plot_survival, read_outlier_csv

OUTPUTS = ("scaling_fits.json", "scaling_fits.csv", "sizes.csv", "fig2_scaling.png", "survival.png")
FIT_COLUMNS = (
    "model",
    "method",
    "beta",
    "beta_lo",
    "beta_hi",
    "alpha",
    "shape",
    "shape_lo",
    "shape_hi",
    "log_likelihood",
    "n",
    "n_censored",
    "n_sizes",
    "ci_method",
    "confidence",
    "time_unit",
)
SIZE_COLUMNS = ("model", "n_atoms", "n", "n_censored", "mean", "sem", "median", "median_lo", "median_hi")
TIME_UNITS = ("steps", "fs")
WEIBULL_CI = ("profile", "bootstrap")


@dataclass
class ScalingReport:
    """What :func:`run_scaling` computed and wrote.

    ``text`` is the human-readable report (:func:`format_report`), ``summary`` the line
    naming the written files, ``doc`` the content of ``scaling_fits.json`` (non-finite
    numbers as None) and ``paths`` the written files."""

    results: list[ModelScaling]
    table: FailureTable
    text: str
    summary: str
    doc: dict[str, Any]
    out: Path
    paths: list[Path] = field(default_factory=list)

    @property
    def printed(self) -> str:
        """What ``legato scaling`` prints: the report, then the summary line."""
        return f"{self.text}\n{self.summary}\n"


def _num(x: float | None) -> float | None:
    """JSON-safe number: non-finite → None."""
    if x is None or not math.isfinite(x):
        return None
    return float(x)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float):
        return _num(obj)
    return obj


def _csv_text(columns: tuple[str, ...], rows: list[list]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for row in rows:
        w.writerow(["" if v is None else (repr(v) if isinstance(v, float) else v) for v in row])
    return buf.getvalue()


def _ci(beta: float, ci: tuple[float, float]) -> str:
    return f"{beta:6.3f} [{ci[0]:6.3f}, {ci[1]:6.3f}]"


def format_report(results: list[ModelScaling]) -> str:
    """Human-readable tables: per-size statistics, then β per model and method."""
    lines = []
    unit = results[0].time_unit if results else "steps"
    conf = f"{results[0].confidence:.0%}" if results else "95%"
    lines.append(f"time to failure per size ({unit}; mean counts censored runs at the budget)")
    lines.append(
        f"{'model':<16} {'N':>7} {'runs':>5} {'cens':>5} {'mean':>10} {'s.e.':>9} "
        f"{'KM median':>10}  {conf} CI"
    )
    for r in results:
        for s in r.sizes:
            lo, hi = s.median_ci
            lines.append(
                f"{r.model:<16} {s.n_atoms:>7d} {s.n:>5d} {s.n_censored:>5d} "
                f"{s.mean:>10.1f} {s.sem:>9.1f} {s.median:>10.1f}  [{lo:.1f}, {hi:.1f}]"
            )
    lines.append("")
    lines.append(f"fidelity-scaling exponent beta ({conf} CI): t_failure = alpha * N^-beta")
    lines.append(
        f"{'model':<16} {'means fit (bootstrap)':>27}  {'Weibull ML':>27}  "
        f"{'shape k':>6}  {'exponential ML':>27}"
    )
    for r in results:
        cells = []
        for name in ("means", "weibull"):
            f = r.fits.get(name)
            cells.append(_ci(f.beta, f.beta_ci) if f else "n/a")
        fw = r.fits.get("weibull")
        k = f"{fw.shape:6.2f}" if fw else "n/a"
        fe = r.fits.get("exponential")
        ex = _ci(fe.beta, fe.beta_ci) if fe else "n/a"
        lines.append(f"{r.model:<16} {cells[0]:>27}  {cells[1]:>27}  {k:>6}  {ex:>27}")
        for note in r.notes:
            lines.append(f"  note ({r.model}): {note}")
    return "\n".join(lines)


def _fit_rows(results: list[ModelScaling]) -> list[list]:
    return [
        [
            r.model,
            name,
            f.beta,
            f.beta_ci[0],
            f.beta_ci[1],
            f.alpha,
            f.shape,
            f.shape_ci[0] if f.shape_ci else None,
            f.shape_ci[1] if f.shape_ci else None,
            f.log_likelihood,
            f.n,
            f.n_censored,
            len(f.sizes),
            f.ci_method,
            f.confidence,
            f.time_unit,
        ]
        for r in results
        for name, f in r.fits.items()
    ]


def _size_rows(results: list[ModelScaling]) -> list[list]:
    return [
        [r.model, s.n_atoms, s.n, s.n_censored, s.mean, s.sem, s.median, s.median_ci[0], s.median_ci[1]]
        for r in results
        for s in r.sizes
    ]


def run_scaling(
    tables: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    time_unit: str = "steps",
    confidence: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
    weibull_ci: str = "profile",
    outliers: str | os.PathLike | None = None,
    overwrite: bool = False,
    clock: str | None = None,
) -> ScalingReport:
    """Fit and plot the merged failure ``tables`` into folder ``out`` (see the module docstring).

    Every input is checked (a :class:`LegatoError`) before anything is written; existing
    outputs are replaced only with ``overwrite``. ``clock`` names the time axis of the
    figures (default: that of ``legato tfail`` tables, see
    :func:`legato.workflows.plots.clock_label`)."""
    if not 0.0 < confidence < 1.0:
        raise LegatoError(f"--confidence must be in (0, 1), got {confidence}")
    if n_boot < 2:
        raise LegatoError("--n-boot must be at least 2")
    if time_unit not in TIME_UNITS:
        raise LegatoError(f"time unit must be one of {', '.join(TIME_UNITS)}, got {time_unit!r}")
    if weibull_ci not in WEIBULL_CI:
        raise LegatoError(f"weibull_ci must be one of {', '.join(WEIBULL_CI)}, got {weibull_ci!r}")
    if isinstance(tables, (str, os.PathLike)):
        tables = [tables]
    if not tables:
        raise LegatoError("no failure tables given")
    table = merge_tables(read_failure_table(p) for p in tables)
    if len(table) == 0:
        raise LegatoError("the failure table(s) hold no rows")
    if outliers:
        read_outlier_csv(outliers)  # fail on a bad file before writing anything
    out = Path(out)
    names = list(OUTPUTS) + (["fig1_outliers.png"] if outliers else [])
    if not overwrite:
        for name in names:
            if (out / name).exists():
                raise LegatoError(f"{out / name} exists; use --overwrite to replace it")
    if out.exists() and not out.is_dir():
        raise LegatoError(f"--out {out} is not a directory")

    results = analyse_table(
        table, time_unit=time_unit, n_boot=n_boot, seed=seed, confidence=confidence, weibull_ci=weibull_ci
    )
    out.mkdir(parents=True, exist_ok=True)
    doc = _jsonable(
        {
            "inputs": [str(p) for p in tables],
            "time_unit": time_unit,
            "confidence": confidence,
            "models": [
                {
                    "model": r.model,
                    "sizes": [{**vars(s), "median_ci": list(s.median_ci)} for s in r.sizes],
                    "fits": {name: f.to_dict() for name, f in r.fits.items()},
                    "notes": r.notes,
                }
                for r in results
            ],
        }
    )
    paths = [out / name for name in names]
    atomic_write_text(paths[0], json.dumps(doc, indent=2, allow_nan=False) + "\n", overwrite=overwrite)
    atomic_write_text(paths[1], _csv_text(FIT_COLUMNS, _fit_rows(results)), overwrite=overwrite)
    atomic_write_text(paths[2], _csv_text(SIZE_COLUMNS, _size_rows(results)), overwrite=overwrite)
    plot_scaling(results, paths[3], overwrite=overwrite, clock=clock)
    plot_survival(
        table, paths[4], time_unit=time_unit, confidence=confidence, overwrite=overwrite, clock=clock
    )
    if outliers:
        plot_outliers(outliers, paths[5], overwrite=overwrite)
    return ScalingReport(
        results=results,
        table=table,
        text=format_report(results),
        summary=f"wrote {', '.join(names)} to {out}",
        doc=doc,
        out=out,
        paths=paths,
    )
