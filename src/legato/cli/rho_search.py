"""``legato rho-search CONFIG.yaml --rho 0.001,0.0025,0.005,0.01 --out DIR``.

Trains one Allegro-Legato (SAM) model per ρ with the training settings of a study config
(``train`` + ``legato`` sections), runs the same seeded time-to-failure ensemble of each at
the base size (``tfail`` section, first size), and writes Table 1 (``table1_rho.csv``,
``table1_rho.md``) and ``table1_rho.png``. Finished models and ensembles are reused with
``--resume``. See docs/study.md.
"""

from __future__ import annotations

import argparse

from legato.cli.study import add_workers_argument, load_config_with_workers
from legato.config_file import parse_floats

EXAMPLES = """\
  legato rho-search configs/study_quick.yaml --rho 0.001,0.005,0.01 --out runs/rho_search
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="study settings file (its train, legato and tfail sections are used)")
    parser.add_argument(
        "--rho",
        default=None,
        metavar="LIST",
        help="comma-separated SAM rho values (default: the config's rho_grid)",
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument(
        "--resume", action="store_true", help="continue the search in DIR, reusing finished models"
    )
    add_workers_argument(parser)


def run(args: argparse.Namespace) -> int:
    from legato.workflows.rho_search import format_rho_markdown
    from legato.workflows.study import run_rho_search

    cfg = load_config_with_workers(args)
    rhos = None
    if args.rho:
        rhos = parse_floats(args.rho, "--rho")
    rows = run_rho_search(cfg, args.out, rhos, resume=args.resume)
    print(format_rho_markdown(rows))
    print(f"wrote table1_rho.csv, table1_rho.md, table1_rho.png to {args.out}")
    return 0
