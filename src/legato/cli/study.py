"""``legato study CONFIG.yaml --out DIR``: the whole robustness study, stage by stage.

Trains Allegro (Adam) and one Legato (SAM) model per ρ of the grid, scores the grid by
time-to-failure at the base size (Table 1), runs the time-to-failure ensembles of Allegro
and the chosen Legato at every size, fits the fidelity scaling (Fig. 2), and measures test
errors, sharpness and the loss landscape. Results: ``DIR/results.md`` and
``DIR/results.json``, tables (CSV) and PNGs. An interrupted study continues with
``--resume`` (same config). See docs/study.md.
"""

from __future__ import annotations

import argparse

from legato.errors import LegatoError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from legato.analysis.study import STAGES

    parser.add_argument("config", help="study YAML (see configs/study.yaml, docs/study.md)")
    parser.add_argument("--out", required=True, metavar="DIR", help="study folder")
    parser.add_argument(
        "--resume", action="store_true", help="continue the study in DIR (the config must be the same)"
    )
    parser.add_argument(
        "--stages",
        default=None,
        help=f"comma-separated subset of {','.join(STAGES)} (default: all; "
        "later stages need the earlier ones)",
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="parallel processes (overrides the config's workers)"
    )


def run(args: argparse.Namespace) -> int:
    from legato.analysis.study import STAGES, run_study
    from legato.analysis.study_config import load_study_config

    cfg = load_study_config(args.config, workers=args.workers)
    stages = STAGES
    if args.stages:
        stages = tuple(s.strip() for s in args.stages.split(","))
        bad = [s for s in stages if s not in STAGES]
        if bad:
            raise LegatoError(f"unknown stage(s) {', '.join(bad)}; valid: {', '.join(STAGES)}")
    study = run_study(cfg, args.out, resume=args.resume, stages=stages)
    if study.done("report"):
        print(f"results: {study.out / 'results.md'}")
    return 0
