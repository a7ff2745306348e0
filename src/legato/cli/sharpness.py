"""``legato sharpness MODEL DATA``: loss sharpness around a trained model (paper Table 4)."""

from __future__ import annotations

import argparse

EXAMPLES = """\
  legato sharpness runs/small_legato/best_model.pt data/nh3_liquid_gfn1.extxyz.gz --subset train
  legato sharpness runs/small_legato/best_model.pt data/nh3_liquid_gfn1.extxyz.gz --samples 300 --json s.json
  legato sharpness runs/small_legato/best_model.pt data/nh3_liquid_gfn1.extxyz.gz --method both --pga-steps 20
"""

#: defaults that finish in a few minutes on one core for the small shipped model; the paper's
#: Table 4 used 1,000 samples over all training frames (--samples 1000 --max-frames 0: hours)
DEFAULT_SAMPLES = 100
DEFAULT_MAX_FRAMES = 32
#: projected gradient ascent: steps after the SAM point, each 0.5 rho long
DEFAULT_PGA_STEPS = 20
DEFAULT_PGA_STEP_FRACTION = 0.5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from legato.cli.evaluate import add_subset_options

    parser.description = (
        "Loss sharpness around a trained model (paper Table 4): the largest (or mean) rise of\n"
        "the training loss over random weight perturbations of radius rho.\n\n"
        f"The defaults ({DEFAULT_SAMPLES} samples on {DEFAULT_MAX_FRAMES} frames) take a few "
        "minutes on one core for\nthe small shipped model. The time grows with --samples times "
        "--max-frames; the\npaper's setting, --samples 1000 --max-frames 0 (all frames), takes "
        "hours on a CPU.\n\n"
        "--method pga (or both) also searches the worst case, the paper's max over the whole\n"
        "ball, by projected gradient ascent from the SAM point: a few gradient passes find far\n"
        "steeper directions than thousands of random ones."
    )
    parser.add_argument("model", help="model file written by legato train (for example best_model.pt)")
    parser.add_argument("data", help="labelled frames (the paper uses the training frames: --subset train)")
    parser.add_argument(
        "--rho", type=float, default=0.05, help="radius of the perturbations (gaussian: their std)"
    )
    parser.add_argument(
        "--samples",
        type=int,
        default=DEFAULT_SAMPLES,
        metavar="N",
        help="random perturbations to try; the paper used 1000",
    )
    parser.add_argument(
        "--stat",
        choices=["max", "mean"],
        default="max",
        help="statistic of the loss rises: max (paper) or mean (public code)",
    )
    parser.add_argument(
        "--dist",
        choices=["ball", "gaussian"],
        default="ball",
        help="perturbations uniform in the ball of radius rho (paper) or normal with std rho "
        "per parameter (public code)",
    )
    parser.add_argument(
        "--method",
        choices=["random", "pga", "both"],
        default="random",
        help="random: max/mean over random perturbations (the default); pga: worst case in the "
        "ball by projected gradient ascent; both: the two, on the same frames",
    )
    parser.add_argument(
        "--pga-steps",
        type=int,
        default=DEFAULT_PGA_STEPS,
        metavar="N",
        help="ascent steps after the SAM point (each one loss-and-gradient pass; 0: SAM point only)",
    )
    parser.add_argument(
        "--pga-step-fraction",
        type=float,
        default=DEFAULT_PGA_STEP_FRACTION,
        metavar="F",
        help="length of an ascent step as a fraction of rho",
    )
    parser.add_argument(
        "--pga-restarts",
        type=int,
        default=0,
        metavar="N",
        help="extra ascents from random points of the sphere of radius rho (--seed)",
    )
    add_subset_options(parser)
    parser.add_argument(
        "--max-frames",
        type=int,
        default=DEFAULT_MAX_FRAMES,
        metavar="N",
        help="use N frames evenly spaced over the selection; 0: all of them",
    )
    parser.add_argument("--batch-size", type=int, default=4, metavar="N", help="frames per model call")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random perturbations")
    parser.add_argument(
        "--dtype",
        choices=["float64", "float32", "model"],
        default="float64",
        help="precision of the loss evaluations (model: the model's own)",
    )
    parser.add_argument(
        "--json", metavar="OUT", help="also write the result to this JSON file (it must not exist yet)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def load_for_analysis(path: str, dtype: str):
    """Load a model and cast it for analysis (float64 by default)."""

    from legato import load_model
    from legato.dtypes import as_dtype

    model = load_model(path)
    if dtype != "model":
        model = model.to(as_dtype(dtype))
    return model


def run(args: argparse.Namespace) -> int:
    from legato.cli.evaluate import check_json_output, check_positive
    from legato.errors import LegatoError
    from legato.train.checkpoint import atomic_write_text, finite_json
    from legato.train.evaluation import model_batches, model_loss_spec, select_frames
    from legato.train.sharpness import sharpness, worst_case_sharpness

    check_positive(args.samples, "--samples")
    check_positive(args.batch_size, "--batch-size")
    if args.max_frames < 0:
        raise LegatoError(f"--max-frames must be >= 0 (0: all frames), got {args.max_frames}")
    if not args.rho > 0:
        raise LegatoError(f"--rho must be > 0 (got {args.rho})")
    if args.pga_steps < 0:
        raise LegatoError(f"--pga-steps must be >= 0 (got {args.pga_steps})")
    if args.pga_restarts < 0:
        raise LegatoError(f"--pga-restarts must be >= 0 (got {args.pga_restarts})")
    if not 0 < args.pga_step_fraction < float("inf"):
        raise LegatoError(f"--pga-step-fraction must be > 0 (got {args.pga_step_fraction})")
    check_json_output(args.json)
    model = load_for_analysis(args.model, args.dtype)
    frames = select_frames(model, args.data, args.index, args.subset, args.where)
    max_frames = args.max_frames or None
    batches = model_batches(model, frames, args.batch_size, max_frames, progress=not args.no_progress)
    spec = model_loss_spec(model)
    res = worst = None
    if args.method in ("random", "both"):
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
    if args.method in ("pga", "both"):
        worst = worst_case_sharpness(
            model,
            batches,
            spec,
            args.rho,
            args.pga_steps,
            args.pga_step_fraction,
            args.pga_restarts,
            args.seed,
            progress=not args.no_progress,
        )
    n_frames = sum(len(b["num_atoms"]) for b in batches)
    first = res if res is not None else worst
    assert first is not None
    print(
        f"{args.model}: {n_frames} frames, {first.n_parameters} parameters, loss scale "
        f"{spec.scale:.4g} eV/Å, L(w) = {first.base_loss:.6g}"
    )
    if res is not None:
        print(
            f"sharpness ({res.stat} over {res.samples} ε, {res.dist}, rho {res.rho:g}) = "
            f"{res.value:.4e} ± {res.stderr:.2e}   [mean {res.mean:.3e}, max {res.max:.3e}, "
            f"min {res.min:.3e}]"
        )
    if worst is not None:
        print(
            f"worst-case sharpness (PGA: SAM point + {worst.steps} steps of {worst.step_fraction:g} rho, "
            f"{worst.restarts} restarts, rho {worst.rho:g}) = {worst.value:.4e}   [‖ε‖ {worst.eps_norm:.3g}, "
            f"first order rho·‖∇L‖ {worst.rho * worst.grad_norm:.3e}, best at step {worst.best_step} "
            f"of run {worst.best_restart}]"
        )
    if res is not None and worst is not None and res.max > 0:
        print(f"worst case / max over random ε = {worst.value / res.max:.3g}")
    if args.json:
        out = {"model": args.model, "data": args.data, "n_frames": n_frames}
        if res is not None:
            out.update(res.as_dict())
        if worst is not None:
            out.update(method=args.method, worst_case=worst.as_dict())
        atomic_write_text(args.json, finite_json(out))
        print(f"wrote {args.json}")
    return 0
