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

EXAMPLES = (
    "  legato tfail runs/small_legato/best_model.pt --structure data/nh3_liquid_gfn1.extxyz.gz "
    "--sizes 1,1x1x2 --instances 4 --nvt-steps 200 --max-steps 500 "
    "--label small_legato --out runs/tfail_small\n"
    "  legato tfail runs/small_legato/best_model.pt --structure data/nh3_liquid_gfn1.extxyz.gz "
    "--sizes 1 --instances 4 --engine lammps --ranks 2 --threads 1 --out runs/tfail_lammps\n"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a model written by legato train (its best_model.pt)")
    parser.add_argument(
        "--structure",
        required=True,
        metavar="FILE",
        help="the base box: a periodic structure file ASE can read",
    )
    parser.add_argument(
        "--structure-index", type=int, default=0, metavar="I", help="frame of --structure to use"
    )
    parser.add_argument(
        "--sizes",
        default="1,2,3",
        help="box sizes, comma-separated: k for k×k×k copies of the base box, or AxBxC",
    )
    parser.add_argument("--instances", type=int, default=10, metavar="N", help="instances (seeds) per size")
    parser.add_argument("--seed", type=int, default=0, help="the instances' seeds are SEED, SEED+1, ...")
    parser.add_argument("--temperature-K", type=float, default=200.0, metavar="T", help="temperature in K")
    parser.add_argument("--timestep-fs", type=float, default=2.5, metavar="DT", help="MD time step in fs")
    parser.add_argument(
        "--nvt-steps", type=int, default=1000, metavar="N", help="Nosé–Hoover NVT steps before the NVE stage"
    )
    parser.add_argument(
        "--thermostat-tau-fs",
        type=float,
        default=None,
        metavar="TAU",
        help="Nosé–Hoover time constant in fs (default: 100 time steps, as the paper's LAMMPS input)",
    )
    parser.add_argument(
        "--max-steps",
        type=int,
        default=10000,
        metavar="N",
        help="NVE step budget; instances alive after it are recorded as censored",
    )
    parser.add_argument(
        "--perturb-A",
        type=float,
        default=0.01,
        metavar="SIGMA",
        help="Gaussian displacement of every coordinate of the base box, in Å",
    )
    parser.add_argument(
        "--check-every",
        type=int,
        default=10,
        metavar="N",
        help="steps between failure checks (as the paper's code)",
    )
    parser.add_argument(
        "--temperature-window-K",
        default="auto",
        metavar="LO,HI",
        help="an instance fails when its temperature leaves LO,HI (in K); auto is [T/2, 3T/2], none disables",
    )
    parser.add_argument(
        "--min-distance-A",
        type=float,
        default=0.5,
        metavar="D",
        help="an instance fails when two atoms come closer than D Å; 0 disables",
    )
    parser.add_argument(
        "--max-force-outliers",
        type=int,
        default=None,
        metavar="N",
        help="an instance fails when more than N atoms have a force beyond --outlier-sigma σ "
        "(default: outliers are counted, not a failure)",
    )
    parser.add_argument(
        "--outlier-sigma",
        type=float,
        default=5.0,
        metavar="K",
        help="a force component beyond K σ is an outlier (σ: spread of the training forces)",
    )
    parser.add_argument(
        "--force-sigma-eV-A",
        type=float,
        default=None,
        metavar="SIGMA",
        help="σ of the training force components in eV/Å (default: from the model's training run)",
    )
    parser.add_argument(
        "--label",
        default=None,
        help="the model's name in the tables (default: the model file's name without extension)",
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder; rerunning continues it")
    parser.add_argument(
        "--checkpoint-every", type=int, default=500, metavar="N", help="steps between MD checkpoints"
    )
    parser.add_argument("--no-progress", action="store_true", help="do not show a progress bar")
    parser.add_argument(
        "--engine",
        choices=("python", "lammps"),
        default="python",
        help="python: legato's batched MD; lammps: one LAMMPS run per instance with pair_style legato "
        "(same instances, stages and tables; see docs/lammps.md)",
    )
    parser.add_argument(
        "--ranks", type=int, default=1, metavar="R", help="MPI ranks per LAMMPS run (--engine lammps)"
    )


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

    from legato.data import read_frames
    from legato.models import load_model
    from legato.workflows.tfail import TfailProtocol, run_ensemble

    protocol = TfailProtocol(
        temperature_K=args.temperature_K,
        timestep_fs=args.timestep_fs,
        nvt_steps=args.nvt_steps,
        thermostat_tau_fs=args.thermostat_tau_fs,
        max_steps=args.max_steps,
        perturb_A=args.perturb_A,
        check_every=args.check_every,
        temperature_window_K=parse_window(args.temperature_window_K),
        min_distance_A=None if args.min_distance_A <= 0 else args.min_distance_A,  # NaN: refused
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
    # the same instances, protocol and tables for both engines
    common = (model, frames[args.structure_index], args.sizes, args.instances, protocol, args.out, label)
    if args.engine == "lammps":
        from legato.lammps.tfail import run_ensemble_lammps

        res = run_ensemble_lammps(
            *common,
            seed=args.seed,
            ranks=args.ranks,
            threads=args.threads or 1,
            force_sigma_eV_A=args.force_sigma_eV_A,
        )
    else:
        if args.ranks != 1:
            raise LegatoError("--ranks applies to --engine lammps only")
        res = run_ensemble(
            *common,
            seed=args.seed,
            force_sigma_eV_A=args.force_sigma_eV_A,
            checkpoint_every=args.checkpoint_every,
            progress=not args.no_progress,
        )
    print(f"{len(res.table)} instances of {label!r} in {res.out / 'failures.csv'}")
    return 0
