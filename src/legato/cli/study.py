"""``legato study CONFIG.yaml --out DIR``: the whole robustness study, stage by stage.

Trains Allegro (Adam) and one Legato (SAM) model per ρ of the grid, scores the grid by
time-to-failure at the base size (Table 1), runs the time-to-failure ensembles of Allegro
and the chosen Legato at every size, fits the fidelity scaling (Fig. 2), and measures test
errors, sharpness and the loss landscape. Results: ``DIR/results.md`` and
``DIR/results.json``, tables (CSV) and PNGs. An interrupted study continues with
``--resume`` (same config). See docs/study.md.

A config with ``version: 2`` runs study v2 (several trained models per arm, Adam controls,
independent starting boxes; docs/reproduction.md): its stages are
data,train,select,starts,tfail,errors,sharpness,report and ``--max-hours H`` stops
launching new jobs after H hours (rerun with ``--resume`` to continue).
"""

from __future__ import annotations

import argparse

from legato.errors import LegatoError

EXAMPLES = """\
  legato study configs/study_quick.yaml --out runs/study_quick
  legato study configs/study.yaml --out runs/study --resume --workers 2 --threads 1
  legato study configs/study_v2.yaml --out runs/study_v2 --resume --max-hours 2.3
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from legato.workflows.jobs import STAGES  # light: the help needs no torch

    parser.add_argument("config", help="study settings file (see configs/study.yaml and docs/study.md)")
    parser.add_argument("--out", required=True, metavar="DIR", help="study folder (results, models, logs)")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the study already in DIR (same settings file; finished stages are kept)",
    )
    parser.add_argument(
        "--stages",
        default=None,
        metavar="LIST",
        help=f"comma-separated stages to run, from {','.join(STAGES)} "
        "(study v2: data,train,select,starts,tfail,errors,sharpness,report; "
        "default: all; a later stage needs the earlier ones)",
    )
    parser.add_argument(
        "--max-hours",
        type=float,
        default=None,
        metavar="H",
        help="study v2: start no new job after H hours; the stage stays open for --resume",
    )
    parser.add_argument(
        "--export",
        default=None,
        metavar="DIR",
        help="study v2: after the report, copy its tables, figures and model files to DIR "
        "(e.g. docs/results/study_v2)",
    )
    add_workers_argument(parser)


def add_workers_argument(parser: argparse.ArgumentParser) -> None:
    """--workers of the commands that run a study config (study, rho-search)."""
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="parallel processes for trainings and MD ensembles (default: the config's workers)",
    )


def load_config_with_workers(args: argparse.Namespace):
    """The study config with --workers and --threads applied (a note if they oversubscribe)."""
    from legato.workflows.study_config import load_study_config, set_worker_threads

    cfg = load_study_config(args.config, workers=args.workers)
    note = set_worker_threads(cfg, getattr(args, "threads", None))
    if note:
        print(note)
    return cfg


def _stages(text: str | None, valid: tuple[str, ...]) -> tuple[str, ...]:
    if not text:
        return valid
    stages = tuple(s.strip() for s in text.split(","))
    bad = [s for s in stages if s not in valid]
    if bad:
        raise LegatoError(f"unknown stage(s) {', '.join(bad)}; valid: {', '.join(valid)}")
    return stages


def run_v2(args: argparse.Namespace) -> int:
    from legato.workflows.study_config import set_worker_threads
    from legato.workflows.study_v2 import STAGES_V2, StudyV2
    from legato.workflows.study_v2_config import load_study_v2_config

    cfg = load_study_v2_config(args.config)
    if args.workers is not None:
        if args.workers < 1:
            raise LegatoError("--workers must be >= 1")
        cfg.workers = args.workers
    note = set_worker_threads(cfg, getattr(args, "threads", None))
    if note:
        print(note)
    stages = _stages(args.stages, STAGES_V2)
    study = StudyV2(cfg, args.out, resume=args.resume, max_hours=args.max_hours)
    study.run(stages)
    if study.done("report"):
        print(f"results: {study.out / 'results.md'}")
        if args.export:
            from legato.workflows.study_v2_report import export_results

            files = export_results(study, args.export)
            print(f"exported {len(files)} files to {args.export}")
    elif args.export:
        raise LegatoError("--export needs a finished report stage")
    return 0


def run(args: argparse.Namespace) -> int:
    from legato.config_file import read_yaml_mapping
    from legato.workflows.study import STAGES, run_study

    if read_yaml_mapping(args.config).get("version") == 2:
        return run_v2(args)
    if getattr(args, "max_hours", None) is not None or getattr(args, "export", None) is not None:
        raise LegatoError("--max-hours and --export apply to version-2 study configs")
    cfg = load_config_with_workers(args)
    stages = _stages(args.stages, STAGES)
    study = run_study(cfg, args.out, resume=args.resume, stages=stages)
    if study.done("report"):
        print(f"results: {study.out / 'results.md'}")
    return 0
