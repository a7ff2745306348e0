"""``legato train CONFIG.yaml`` / ``legato train --resume RUN_DIR``."""

from __future__ import annotations

import argparse

from legato.errors import LegatoError

EXAMPLES = """\
  legato train configs/train_small_legato.yaml
  legato train --resume runs/small_legato --max-time-minutes 40
"""

#: command-line names of the training settings the options override
OPTION_NAMES = {"max_epochs": "--max-epochs", "max_time_minutes": "--max-time-minutes"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "config",
        nargs="?",
        help="training config file (YAML; see docs/training.md); not with --resume",
    )
    parser.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue the run in this folder from its last checkpoint",
    )
    parser.add_argument(
        "--run-dir",
        help="output folder of a new run, instead of the config's run_dir (a folder left by "
        "a start that stopped before its first checkpoint is moved aside)",
    )
    parser.add_argument(
        "--max-epochs",
        type=int,
        metavar="N",
        help="stop after epoch N, instead of the config's training.max_epochs (also with --resume)",
    )
    parser.add_argument(
        "--max-time-minutes",
        type=float,
        metavar="MIN",
        help="wall-time budget in minutes over the run and all its resumes, instead of the "
        "config's training.max_time_minutes (also with --resume)",
    )


def run(args: argparse.Namespace) -> int:
    from legato.train.config import TrainConfig, apply_training_overrides, load_config
    from legato.train.trainer import Trainer

    if (args.config is None) == (args.resume is None):
        raise LegatoError("give either a CONFIG.yaml or --resume RUN_DIR")
    overrides = {"max_epochs": args.max_epochs, "max_time_minutes": args.max_time_minutes}
    # the options are checked before anything is read (a bad value is one line naming it)
    probe = TrainConfig.model_construct(training=TrainConfig.model_fields["training"].default_factory())
    apply_training_overrides(probe, overrides, OPTION_NAMES)
    if args.resume:
        if args.run_dir:
            raise LegatoError("--run-dir applies to new runs only")
        trainer = Trainer.resume(args.resume, **overrides)
    else:
        cfg = load_config(args.config)
        if args.run_dir:
            cfg.run_dir = args.run_dir
        apply_training_overrides(cfg, overrides, OPTION_NAMES)
        trainer = Trainer.create(cfg)
    trainer.fit()
    return 0
