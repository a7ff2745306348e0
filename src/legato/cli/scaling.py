"""``legato scaling``: fit t_failure = α·N^(−β) to failure tables and plot (paper Fig. 2).

Reads one or more failure tables (CSV from ``legato tfail``), merges them, and for every
model label fits β by the paper's log–log fit of means (bootstrap CI) and by Weibull /
exponential maximum likelihood that accounts for censored runs (profile-likelihood CI).
Writes ``scaling_fits.json``, ``scaling_fits.csv``, ``sizes.csv``, ``fig2_scaling.png``,
``survival.png`` (and ``fig1_outliers.png`` with ``--outliers``) into ``--out``. The work is
:func:`legato.workflows.scaling.run_scaling`; this module parses the options and prints.
"""

from __future__ import annotations

import argparse

EXAMPLES = """\
  legato scaling runs/tfail_small/failures.csv --out runs/scaling_small
"""


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


def run(args: argparse.Namespace) -> int:
    from legato.workflows.scaling import run_scaling

    report = run_scaling(
        args.tables,
        args.out,
        time_unit=args.time,
        confidence=args.confidence,
        n_boot=args.n_boot,
        seed=args.seed,
        weibull_ci=args.weibull_ci,
        outliers=args.outliers,
        overwrite=args.overwrite,
    )
    print(report.text)
    print(report.summary)
    return 0
