"""``legato train CONFIG.yaml`` / ``legato train --resume RUN_DIR``."""

from __future__ import annotations

import argparse

from legato.errors import LegatoError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", nargs="?", help="training YAML (see docs/training.md)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its checkpoint")
    parser.add_argument("--run-dir", help="override run_dir of the config (new runs only)")
    parser.add_argument("--max-epochs", type=int, help="override training.max_epochs (also when resuming)")
    parser.add_argument(
        "--max-time-minutes",
        type=float,
        help="override the wall-time budget (total over all resumes)",
    )


def run(args: argparse.Namespace) -> int:
    from legato.train.config import load_config
    from legato.train.trainer import Trainer

    if (args.config is None) == (args.resume is None):
        raise LegatoError("give either a CONFIG.yaml or --resume RUN_DIR")
    if args.resume:
        if args.run_dir:
            raise LegatoError("--run-dir applies to new runs only")
        trainer = Trainer.resume(
            args.resume, max_epochs=args.max_epochs, max_time_minutes=args.max_time_minutes
        )
    else:
        cfg = load_config(args.config)
        if args.run_dir:
            cfg.run_dir = args.run_dir
        if args.max_epochs is not None:
            cfg.training.max_epochs = args.max_epochs
        if args.max_time_minutes is not None:
            cfg.training.max_time_minutes = args.max_time_minutes
        trainer = Trainer.create(cfg)
    trainer.fit()
    return 0
