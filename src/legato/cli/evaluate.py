"""``legato evaluate MODEL DATA``: energy / force errors of a model on a dataset."""

from __future__ import annotations

import argparse
import json
import time


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="model file written by legato (best_model.pt, ...)")
    parser.add_argument("data", help="labelled frames, any ASE-readable file")
    parser.add_argument(
        "--where", metavar="KEY=VALUE", help="only frames whose info KEY equals VALUE (e.g. split=test)"
    )
    parser.add_argument("--index", default=":", help="ASE index of the frames (default ':')")
    parser.add_argument(
        "--subset",
        choices=["all", "train", "val"],
        default="all",
        help="frames of the split recorded in the model's run folder (default: all)",
    )
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--json", metavar="OUT", help="also write the metrics to a JSON file")
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from legato import load_model
    from legato.errors import LegatoError
    from legato.train.checkpoint import atomic_write_text
    from legato.train.evaluation import (
        evaluate_batches,
        frozen_parameters,
        model_batches,
        model_loss_spec,
        select_frames,
    )
    from legato.train.metrics import format_table

    if args.json and Path(args.json).exists():
        raise LegatoError(f"{args.json} exists; refusing to overwrite it")
    model = load_model(args.model)
    frames = select_frames(model, args.data, args.index, args.subset, args.where)
    batches = model_batches(model, frames, args.batch_size, progress=not args.no_progress)
    t0 = time.perf_counter()
    with frozen_parameters(model):
        metrics = evaluate_batches(model, batches, model_loss_spec(model), progress=not args.no_progress)
    dt = time.perf_counter() - t0
    n_atoms = sum(len(a) for a in frames)
    print(f"{args.model} on {len(frames)} frames ({n_atoms} atoms) of {args.data}")
    print(format_table(metrics, model.type_names))
    print(f"loss {metrics['loss']:.6g}   ({dt:.2f} s)")
    if args.json:
        out = {"model": args.model, "data": args.data, "n_frames": len(frames), **metrics}
        atomic_write_text(args.json, json.dumps(out, indent=1))
    return 0
