"""``legato landscape MODEL [MODEL ...] DATA``: 1-D loss surfaces on one plot (Fig. 5)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "paths",
        nargs="+",
        metavar="MODEL [MODEL ...] DATA",
        help="one or more model files, then the labelled data file",
    )
    parser.add_argument("--out", default="landscape", help="output prefix: OUT.csv, OUT.png")
    parser.add_argument("--labels", nargs="+", help="curve labels (default: file names)")
    parser.add_argument("--points", type=int, default=41, help="t values in [-1, 1]")
    parser.add_argument("--seed", type=int, default=0, help="seed of the direction d")
    parser.add_argument(
        "--normalize",
        choices=["global", "filter", "none"],
        default="global",
        help="global: |d| = scale; filter: filter-wise |d_f| = scale·|w_f|; "
        "none: d ~ N(0, scale²) per parameter",
    )
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument(
        "--subset",
        choices=["all", "train", "val"],
        default="all",
        help="frames of the split recorded in each model's run folder",
    )
    parser.add_argument(
        "--where", metavar="KEY=VALUE", help="only frames whose info KEY equals VALUE (e.g. split=test)"
    )
    parser.add_argument("--index", default=":")
    parser.add_argument("--max-frames", type=int, help="use N frames evenly spaced over the selection")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--dtype", choices=["float64", "float32", "model"], default="float64")
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import numpy as np

    from legato.cli.sharpness import load_for_analysis
    from legato.errors import LegatoError
    from legato.train.evaluation import model_batches, model_loss_spec, select_frames
    from legato.train.landscape import loss_curve, plot, random_direction, write_csv

    if len(args.paths) < 2:
        raise LegatoError("give at least one MODEL and the DATA file")
    *models, data = args.paths
    labels = args.labels or [Path(m).parent.name + "/" + Path(m).stem for m in models]
    if len(labels) != len(models) or len(set(labels)) != len(labels):
        raise LegatoError("--labels needs one distinct label per model")
    if args.points < 2:
        raise LegatoError("--points must be >= 2")
    out_csv, out_png = Path(f"{args.out}.csv"), Path(f"{args.out}.png")
    for p in (out_csv, out_png):
        if p.exists():
            raise LegatoError(f"{p} exists; refusing to overwrite it")
    ts = np.linspace(-1.0, 1.0, args.points)
    curves: dict[str, np.ndarray] = {}
    for path, label in zip(models, labels, strict=True):
        model = load_for_analysis(path, args.dtype)
        frames = select_frames(model, data, args.index, args.subset, args.where)
        batches = model_batches(
            model, frames, args.batch_size, args.max_frames, progress=not args.no_progress
        )
        d = random_direction(model, args.seed, args.normalize, args.scale)
        curves[label] = loss_curve(
            model, batches, model_loss_spec(model), d, ts, progress=not args.no_progress, desc=label
        )
        c = curves[label]
        i0 = int(np.argmin(np.abs(ts)))
        print(
            f"{label}: L(w) = {c[i0]:.6g}, L(w-d) = {c[0]:.6g}, "
            f"L(w+d) = {c[-1]:.6g}, max rise {np.max(c - c[i0]):.4g}"
        )
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    write_csv(out_csv, ts, curves)
    title = f"loss along a random direction ({args.normalize}, scale {args.scale:g}, seed {args.seed})"
    plot(out_png, ts, curves, title)
    print(f"wrote {out_csv} and {out_png}")
    return 0
