"""``legato sharpness MODEL DATA``: loss sharpness around a trained model (paper Table 4)."""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="model file written by legato")
    parser.add_argument("data", help="labelled frames (the paper uses the training data)")
    parser.add_argument("--rho", type=float, default=0.05, help="radius / std (default 0.05)")
    parser.add_argument("--samples", type=int, default=1000, help="random ε (default 1000)")
    parser.add_argument(
        "--stat", choices=["max", "mean"], default="max", help="paper: max; public code: mean"
    )
    parser.add_argument(
        "--dist",
        choices=["ball", "gaussian"],
        default="ball",
        help="ε uniform in the ρ-ball (paper) or N(0, ρ²) per parameter (public code)",
    )
    parser.add_argument(
        "--subset",
        choices=["all", "train", "val"],
        default="all",
        help="frames of the split recorded in the model's run folder",
    )
    parser.add_argument(
        "--where", metavar="KEY=VALUE", help="only frames whose info KEY equals VALUE (e.g. split=test)"
    )
    parser.add_argument("--index", default=":", help="ASE index of the frames")
    parser.add_argument("--max-frames", type=int, help="use N frames evenly spaced over the selection")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--dtype",
        choices=["float64", "float32", "model"],
        default="float64",
        help="precision of the loss evaluations (default float64)",
    )
    parser.add_argument("--json", metavar="OUT", help="also write the result to a JSON file")
    parser.add_argument("--no-progress", action="store_true")


def load_for_analysis(path: str, dtype: str):
    """Load a model and cast it for analysis (float64 by default)."""
    import torch

    from legato import load_model

    model = load_model(path)
    if dtype != "model":
        model = model.to({"float64": torch.float64, "float32": torch.float32}[dtype])
    return model


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from legato.errors import LegatoError
    from legato.train.checkpoint import atomic_write_text
    from legato.train.evaluation import model_batches, model_loss_spec, select_frames
    from legato.train.sharpness import sharpness

    if args.json and Path(args.json).exists():
        raise LegatoError(f"{args.json} exists; refusing to overwrite it")
    model = load_for_analysis(args.model, args.dtype)
    frames = select_frames(model, args.data, args.index, args.subset, args.where)
    batches = model_batches(model, frames, args.batch_size, args.max_frames, progress=not args.no_progress)
    spec = model_loss_spec(model)
    res = sharpness(
        model,
        batches,
        spec,
        args.rho,
        args.samples,
        args.stat,
        args.dist,
        args.seed,
        progress=not args.no_progress,
    )
    n_frames = sum(len(b["num_atoms"]) for b in batches)
    print(
        f"{args.model}: {n_frames} frames, {res.n_parameters} parameters, loss scale "
        f"{spec.scale:.4g} eV/Å, L(w) = {res.base_loss:.6g}"
    )
    print(
        f"sharpness ({res.stat} over {res.samples} ε, {res.dist}, rho {res.rho:g}) = "
        f"{res.value:.4e} ± {res.stderr:.2e}   [mean {res.mean:.3e}, max {res.max:.3e}, "
        f"min {res.min:.3e}]"
    )
    if args.json:
        out = {"model": args.model, "data": args.data, "n_frames": n_frames, **res.as_dict()}
        atomic_write_text(args.json, json.dumps(out, indent=1))
    return 0
