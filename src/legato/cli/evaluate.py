"""``legato evaluate MODEL DATA``: energy / force errors of a model on a dataset."""

from __future__ import annotations

import argparse
import time

EXAMPLES = """\
  legato evaluate runs/small_legato/best_model.pt data/nh3_liquid_gfn1.extxyz.gz --subset test
  legato evaluate runs/small_legato/best_model.pt data/nh3_liquid_gfn1.extxyz.gz --json test.json
"""

SUBSETS = ["all", "train", "val", "test"]


def add_subset_options(parser: argparse.ArgumentParser, models: str = "the model's") -> None:
    """The frame-selection options shared by evaluate, sharpness and landscape."""
    parser.add_argument(
        "--subset",
        choices=SUBSETS,
        default="all",
        help=f"frames of the split recorded in {models} run folder: train, val, test (the frames "
        "labelled test, or those used neither for training nor for validation) or all frames",
    )
    parser.add_argument(
        "--where",
        action="append",
        metavar="KEY=VALUE",
        help="only frames whose info KEY equals VALUE, for example split=test; repeat it to require "
        "several (split=test --where source=cluster)",
    )
    parser.add_argument(
        "--index",
        default=":",
        help="which frames of the file to read, as an ASE index: ':' all, '0:100' the first 100, "
        "'::10' every tenth",
    )


def check_positive(value: int | None, option: str) -> None:
    """A count option that must be >= 1 (checked before any work)."""
    from legato.errors import LegatoError

    if value is not None and value < 1:
        raise LegatoError(f"{option} must be >= 1 (got {value})")


def check_json_output(path: str | None) -> None:
    """An optional output file: must not exist, and its folder must be writable."""
    from pathlib import Path

    from legato.errors import LegatoError
    from legato.fileio import ensure_writable_file

    if path is None:
        return
    if Path(path).exists():
        raise LegatoError(f"{path} exists; refusing to overwrite it")
    ensure_writable_file(path)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="model file written by legato train (for example best_model.pt)")
    parser.add_argument(
        "data",
        nargs="+",
        help="labelled frames: any file ASE reads (extxyz, extxyz.gz, traj, ...); several files are "
        "read in order (give a run's data files in its config's order for --subset)",
    )
    add_subset_options(parser)
    parser.add_argument("--batch-size", type=int, default=4, metavar="N", help="frames per model call")
    parser.add_argument(
        "--json",
        metavar="OUT",
        help="also write the metrics to this JSON file (it must not exist yet)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from legato import load_model
    from legato.train.checkpoint import atomic_write_text, finite_json
    from legato.train.evaluation import (
        evaluate_batches,
        frozen_parameters,
        model_batches,
        model_loss_spec,
        select_frames,
    )
    from legato.train.metrics import format_table

    check_positive(args.batch_size, "--batch-size")
    check_json_output(args.json)
    from legato.models.fast import fast_model

    model = fast_model(load_model(args.model))
    data = args.data[0] if len(args.data) == 1 else args.data
    frames = select_frames(model, data, args.index, args.subset, args.where)
    batches = model_batches(model, frames, args.batch_size, progress=not args.no_progress)
    t0 = time.perf_counter()
    with frozen_parameters(model):
        metrics = evaluate_batches(model, batches, model_loss_spec(model), progress=not args.no_progress)
    dt = time.perf_counter() - t0
    n_atoms = sum(len(a) for a in frames)
    print(f"{args.model} on {len(frames)} frames ({n_atoms} atoms) of {' '.join(args.data)}")
    print(format_table(metrics, model.type_names))
    print(f"loss {metrics['loss']:.6g}   ({dt:.2f} s)")
    if args.json:
        out = {"model": args.model, "data": data, "n_frames": len(frames), **metrics}
        atomic_write_text(args.json, finite_json(out))
        print(f"wrote {args.json}")
    return 0
