"""``legato tfail MODEL --structure FILE``: time-to-failure ensemble of one model.

For every size (replication k of the base box, or AxBxC) runs ``--instances`` seeded
instances in one MD batch: Maxwell–Boltzmann velocities at T, ``--nvt-steps`` of
Nosé–Hoover NVT, then NVE until failure or ``--max-steps`` NVE steps. Writes
``failures.csv`` (t_failure in NVE steps and fs, reason, censored) and ``outliers.csv``
into ``--out``; rerunning continues where it stopped. See docs/study.md.
"""

from __future__ import annotations

import argparse

from legato.errors import LegatoError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="saved legato model (best_model.pt of legato train)")
    parser.add_argument("--structure", required=True, help="base box (any ASE-readable file)")
    parser.add_argument(
        "--structure-index", type=int, default=0, help="frame of --structure to use (default 0)"
    )
    parser.add_argument(
        "--sizes",
        default="1,2,3",
        help="replications: k (k×k×k copies) or AxBxC, comma-separated (default 1,2,3)",
    )
    parser.add_argument("--instances", type=int, default=10, help="instances per size (10)")
    parser.add_argument(
        "--seed", type=int, default=0, help="instance seeds are SEED, SEED+1, ... (default 0)"
    )
    parser.add_argument("--temperature-K", type=float, default=200.0)
    parser.add_argument("--timestep-fs", type=float, default=2.5)
    parser.add_argument(
        "--nvt-steps", type=int, default=1000, help="Nosé–Hoover NVT steps before NVE (default 1000)"
    )
    parser.add_argument(
        "--thermostat-tau-fs",
        type=float,
        default=None,
        help="Nosé–Hoover time constant in fs (default: 100 timesteps, the paper's LAMMPS input)",
    )
    parser.add_argument(
        "--max-steps",
        type=int,
        default=10000,
        help="NVE step budget; runs alive after it are censored (10000)",
    )
    parser.add_argument(
        "--perturb-A", type=float, default=0.01, help="Gaussian displacement of every coordinate, Å (0.01)"
    )
    parser.add_argument(
        "--check-every", type=int, default=10, help="steps between failure checks (10, as the public code)"
    )
    parser.add_argument(
        "--temperature-window-K", default="auto", help="LO,HI failure window, 'auto' = [T/2, 3T/2], or 'none'"
    )
    parser.add_argument(
        "--min-distance-A",
        type=float,
        default=0.5,
        help="closest-pair collapse threshold in Å; <= 0 disables (0.5)",
    )
    parser.add_argument(
        "--max-force-outliers",
        type=int,
        default=None,
        help="fail when more atoms exceed outlier-sigma·σ (default: count only)",
    )
    parser.add_argument("--outlier-sigma", type=float, default=5.0)
    parser.add_argument(
        "--force-sigma-eV-A",
        type=float,
        default=None,
        help="σ of training force components (default: from the model's run)",
    )
    parser.add_argument(
        "--label",
        default=None,
        help="model label in the table (default: the model file's name without extension)",
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument(
        "--checkpoint-every", type=int, default=500, help="MD checkpoint interval in steps (500)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def parse_window(text: str) -> tuple[float, float] | str | None:
    t = text.strip().lower()
    if t in ("auto", "none"):
        return None if t == "none" else "auto"
    try:
        lo, hi = (float(x) for x in t.split(","))
    except ValueError:
        raise LegatoError(f"--temperature-window-K must be LO,HI, auto or none; got {text!r}") from None
    return (lo, hi)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from legato.analysis.tfail import TfailProtocol, run_ensemble
    from legato.data import read_frames
    from legato.models import load_model

    protocol = TfailProtocol(
        temperature_K=args.temperature_K,
        timestep_fs=args.timestep_fs,
        nvt_steps=args.nvt_steps,
        thermostat_tau_fs=args.thermostat_tau_fs,
        max_steps=args.max_steps,
        perturb_A=args.perturb_A,
        check_every=args.check_every,
        temperature_window_K=parse_window(args.temperature_window_K),
        min_distance_A=args.min_distance_A if args.min_distance_A > 0 else None,
        max_force_outliers=args.max_force_outliers,
        outlier_sigma=args.outlier_sigma,
    )
    frames = read_frames(args.structure)
    if not -len(frames) <= args.structure_index < len(frames):
        raise LegatoError(
            f"{args.structure} has {len(frames)} frames; "
            f"--structure-index {args.structure_index} is out of range"
        )
    model = load_model(args.model)
    label = args.label or Path(args.model).stem
    res = run_ensemble(
        model,
        frames[args.structure_index],
        args.sizes,
        args.instances,
        protocol,
        args.out,
        label,
        seed=args.seed,
        force_sigma_eV_A=args.force_sigma_eV_A,
        checkpoint_every=args.checkpoint_every,
        progress=not args.no_progress,
    )
    print(f"{len(res.table)} instances of {label!r} in {res.out / 'failures.csv'}")
    return 0
