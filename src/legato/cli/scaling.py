"""``legato scaling``: fit t_failure = α·N^(−β) to failure tables and plot (paper Fig. 2).

Reads one or more failure tables (CSV from ``legato tfail``), merges them, and for every
model label fits β by the paper's log–log fit of means (bootstrap CI) and by Weibull /
exponential maximum likelihood that accounts for censored runs (profile-likelihood CI).
Writes ``scaling_fits.json``, ``scaling_fits.csv``, ``sizes.csv``, ``fig2_scaling.png``,
``survival.png`` (and ``fig1_outliers.png`` with ``--outliers``) into ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
from pathlib import Path

from legato.errors import LegatoError

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
EXAMPLES = """\
  legato scaling runs/tfail_small/failures.csv --out runs/scaling_small
"""
SIZE_COLUMNS = ("model", "n_atoms", "n", "n_censored", "mean", "sem", "median", "median_lo", "median_hi")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "tables", nargs="+", metavar="TABLE.csv", help="failure tables written by legato tfail (merged)"
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder of the fits and plots")
    parser.add_argument(
        "--time",
        choices=("steps", "fs"),
        default="steps",
        help="time unit of the fits: MD steps (as the paper) or fs",
    )
    parser.add_argument(
        "--confidence", type=float, default=0.95, metavar="P", help="confidence level of all intervals"
    )
    parser.add_argument("--n-boot", type=int, default=2000, metavar="N", help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resampling")
    parser.add_argument(
        "--weibull-ci",
        choices=("profile", "bootstrap"),
        default="profile",
        help="how the survival fits' intervals are computed: profile likelihood or bootstrap",
    )
    parser.add_argument(
        "--outliers",
        metavar="CSV",
        default=None,
        help="force-outlier table (outliers.csv of legato tfail) to plot as the paper's Fig. 1",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace existing output files in the folder"
    )


def _num(x: float | None) -> float | None:
    """JSON-safe number: non-finite → None."""
    if x is None or not math.isfinite(x):
        return None
    return float(x)


def _jsonable(obj):
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


def format_report(results) -> str:
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


def run(args: argparse.Namespace) -> int:
    from legato.fileio import atomic_write_text
    from legato.stats.failures import merge_tables, read_failure_table
    from legato.stats.scaling import analyse_table
    from legato.workflows.plots import (
        plot_outliers,
        plot_scaling,
        plot_survival,
        read_outlier_csv,
    )

    if not 0.0 < args.confidence < 1.0:
        raise LegatoError(f"--confidence must be in (0, 1), got {args.confidence}")
    if args.n_boot < 2:
        raise LegatoError("--n-boot must be at least 2")
    table = merge_tables(read_failure_table(p) for p in args.tables)
    if len(table) == 0:
        raise LegatoError("the failure table(s) hold no rows")
    if args.outliers:
        read_outlier_csv(args.outliers)  # fail on a bad file before writing anything
    out = Path(args.out)
    names = list(OUTPUTS) + (["fig1_outliers.png"] if args.outliers else [])
    if not args.overwrite:
        for name in names:
            if (out / name).exists():
                raise LegatoError(f"{out / name} exists; use --overwrite to replace it")
    if out.exists() and not out.is_dir():
        raise LegatoError(f"--out {out} is not a directory")

    results = analyse_table(
        table,
        time_unit=args.time,
        n_boot=args.n_boot,
        seed=args.seed,
        confidence=args.confidence,
        weibull_ci=args.weibull_ci,
    )
    print(format_report(results))

    out.mkdir(parents=True, exist_ok=True)
    doc = {
        "inputs": [str(p) for p in args.tables],
        "time_unit": args.time,
        "confidence": args.confidence,
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
    atomic_write_text(
        out / "scaling_fits.json",
        json.dumps(_jsonable(doc), indent=2, allow_nan=False) + "\n",
        overwrite=args.overwrite,
    )
    fit_rows = []
    size_rows = []
    for r in results:
        for name, f in r.fits.items():
            fit_rows.append(
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
            )
        for s in r.sizes:
            size_rows.append(
                [
                    r.model,
                    s.n_atoms,
                    s.n,
                    s.n_censored,
                    s.mean,
                    s.sem,
                    s.median,
                    s.median_ci[0],
                    s.median_ci[1],
                ]
            )
    atomic_write_text(out / "scaling_fits.csv", _csv_text(FIT_COLUMNS, fit_rows), overwrite=args.overwrite)
    atomic_write_text(out / "sizes.csv", _csv_text(SIZE_COLUMNS, size_rows), overwrite=args.overwrite)
    plot_scaling(results, out / "fig2_scaling.png", overwrite=args.overwrite)
    plot_survival(
        table, out / "survival.png", time_unit=args.time, confidence=args.confidence, overwrite=args.overwrite
    )
    if args.outliers:
        plot_outliers(args.outliers, out / "fig1_outliers.png", overwrite=args.overwrite)
    print(f"wrote {', '.join(names)} to {out}")
    return 0
