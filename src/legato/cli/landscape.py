"""``legato landscape MODEL [MODEL ...] DATA``: 1-D loss surfaces on one plot (Fig. 5)."""

from __future__ import annotations

import argparse

EXAMPLES = (
    "  legato landscape runs/small_legato/best_model.pt data/nh3_liquid_gfn1.extxyz.gz --subset train\n"
    "  legato landscape runs/small_allegro/best_model.pt runs/small_legato/best_model.pt "
    "data/nh3_liquid_gfn1.extxyz.gz --out landscape_both\n"
)

#: frames per loss evaluation by default: a 41-point curve of the small shipped model then takes
#: about a minute per model on one core (0: all frames of the selection)
DEFAULT_MAX_FRAMES = 32


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from legato.cli.evaluate import add_subset_options

    parser.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="one or more model files written by legato train, then the labelled data file "
        "(any file ASE reads)",
    )
    parser.add_argument(
        "--out",
        default="landscape",
        help="output name: writes OUT.csv and OUT.png (neither may exist yet)",
    )
    parser.add_argument(
        "--labels", nargs="+", help="one curve label per model (otherwise: from the file names)"
    )
    parser.add_argument("--points", type=int, default=41, metavar="N", help="points t on [-1, 1]")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random direction d")
    parser.add_argument(
        "--normalize",
        choices=["global", "filter", "none"],
        default="global",
        help="length of the direction: global, |d| equals --scale; filter, each filter of d has "
        "--scale times the norm of that filter of the weights; none, d is normal with std "
        "--scale per parameter",
    )
    parser.add_argument("--scale", type=float, default=1.0, help="size of the direction (see --normalize)")
    add_subset_options(parser, models="each model's")
    parser.add_argument(
        "--max-frames",
        type=int,
        default=DEFAULT_MAX_FRAMES,
        metavar="N",
        help="use N frames evenly spaced over the selection; 0: all of them (slower)",
    )
    parser.add_argument("--batch-size", type=int, default=4, metavar="N", help="frames per model call")
    parser.add_argument(
        "--dtype",
        choices=["float64", "float32", "model"],
        default="float64",
        help="precision of the loss evaluations (model: the model's own)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import numpy as np

    from legato.cli.evaluate import check_json_output, check_positive
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
        raise LegatoError(f"--points must be >= 2 (got {args.points})")
    check_positive(args.batch_size, "--batch-size")
    if args.max_frames < 0:
        raise LegatoError(f"--max-frames must be >= 0 (0: all frames), got {args.max_frames}")
    if not np.isfinite(args.scale) or args.scale <= 0:
        raise LegatoError(f"--scale must be a positive number (got {args.scale})")
    out_csv, out_png = Path(f"{args.out}.csv"), Path(f"{args.out}.png")
    for p in (out_csv, out_png):
        check_json_output(str(p))
    ts = np.linspace(-1.0, 1.0, args.points)
    curves: dict[str, np.ndarray] = {}
    for path, label in zip(models, labels, strict=True):
        model = load_for_analysis(path, args.dtype)
        frames = select_frames(model, data, args.index, args.subset, args.where)
        batches = model_batches(
            model, frames, args.batch_size, args.max_frames or None, progress=not args.no_progress
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
    write_csv(out_csv, ts, curves)
    title = f"loss along a random direction ({args.normalize}, scale {args.scale:g}, seed {args.seed})"
    plot(out_png, ts, curves, title)
    print(f"wrote {out_csv} and {out_png}")
    return 0
