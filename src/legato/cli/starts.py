"""``legato starts --structure FILE --sizes 1,2 --out DIR``: independent starting boxes.

For every size writes ``DIR/N<n>.extxyz`` (one frame per instance): boxes tiled from the
last frames of the MD trajectories at ``--pool-temperatures`` with random cube rotations and
shifts, healed by a Langevin run of ``--steps`` steps with ``--model``
(:mod:`legato.workflows.starts`, docs/starts.md). An existing file is never overwritten: a
size whose file was made with the same arguments is skipped, any other is an error.
"""

from __future__ import annotations

import argparse

EXAMPLES = (
    "  legato starts --structure data/nh3_liquid_gfn1.extxyz.gz --sizes 1,2,3 --instances 8 "
    "--temperature-K 200 --steps 1000 --out runs/starts_200K\n"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from legato.workflows.starts import DEFAULT_HEAL_STEPS

    parser.add_argument(
        "--structure",
        required=True,
        metavar="FILE",
        help="frames with MD trajectories (info traj, source md), e.g. data/nh3_liquid_gfn1.extxyz.gz",
    )
    parser.add_argument(
        "--pool-temperatures",
        default=None,
        metavar="T,..",
        help="temperatures (K) of the trajectories whose last frames are the tiles "
        "(default: --temperature-K)",
    )
    parser.add_argument(
        "--sizes", default="1,2,3", help="box sizes, comma-separated: k for k×k×k tiles, or AxBxC"
    )
    parser.add_argument("--instances", type=int, default=10, metavar="N", help="instances (seeds) per size")
    parser.add_argument("--seed", type=int, default=0, help="the instances' seeds are SEED, SEED+1, ...")
    parser.add_argument(
        "--temperature-K", type=float, default=200.0, metavar="T", help="healing-run temperature in K"
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=DEFAULT_HEAL_STEPS,
        metavar="L",
        help="Langevin healing steps per instance (0: tiling only; docs/starts.md for the default)",
    )
    parser.add_argument(
        "--quench-steps",
        type=int,
        default=100,
        metavar="N",
        help="Langevin steps at --quench-friction-per-fs before the healing steps (absorbs interface energy)",
    )
    parser.add_argument(
        "--quench-friction-per-fs", type=float, default=0.5, metavar="G", help="quench friction in 1/fs"
    )
    parser.add_argument("--timestep-fs", type=float, default=1.0, metavar="DT", help="MD time step in fs")
    parser.add_argument(
        "--friction-per-fs", type=float, default=0.01, metavar="G", help="Langevin friction in 1/fs"
    )
    parser.add_argument("--model", default="models/nh3_legato.pt", help="reference model of the healing run")
    parser.add_argument(
        "--max-redraws", type=int, default=20, metavar="N", help="redraws of a failing instance"
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (N<n>.extxyz per size)")
    parser.add_argument("--no-progress", action="store_true", help="do not show progress bars")


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from legato.config_file import parse_floats
    from legato.data import read_frames
    from legato.errors import LegatoError
    from legato.fileio import ensure_writable_dir
    from legato.md.fingerprint import model_fingerprint
    from legato.models import load_model
    from legato.workflows.starts import (
        CONTACT_LIMITS_A,
        build_starts,
        read_starts,
        select_pool,
        write_starts,
    )
    from legato.workflows.tfail import parse_sizes, replication_name, structure_fingerprint

    sizes = parse_sizes(args.sizes)
    if args.instances < 1 or min(args.seed, args.steps, args.quench_steps, args.max_redraws) < 0:
        raise LegatoError("--instances must be >= 1 and --seed, --steps, --quench-steps, --max-redraws >= 0")
    if not (0 < args.temperature_K < 1e6) or not args.timestep_fs > 0 or not args.friction_per_fs >= 0:
        raise LegatoError("need 0 < --temperature-K < 1e6, --timestep-fs > 0 and --friction-per-fs >= 0")
    temps = (
        [args.temperature_K]
        if args.pool_temperatures is None
        else parse_floats(args.pool_temperatures, "--pool-temperatures")
    )
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise LegatoError(f"--out {out} is not a folder")
    model = None
    if args.steps or args.quench_steps:
        if not Path(args.model).is_file():
            raise LegatoError(f"model file not found: {args.model}")
        model = load_model(args.model)
    pool = select_pool(read_frames(args.structure), temps)
    settings = {
        "pool": [a.info["traj"] for a in pool],
        "pool_sha256": [structure_fingerprint(a) for a in pool],
        "temperature_K": args.temperature_K,
        "steps": args.steps,
        "quench_steps": args.quench_steps,
        "quench_friction_per_fs": args.quench_friction_per_fs,
        "timestep_fs": args.timestep_fs,
        "friction_per_fs": args.friction_per_fs,
        "seed": args.seed,
        "instances": args.instances,
        "max_redraws": args.max_redraws,
        "contact_limits_A": CONTACT_LIMITS_A,
        "model_sha256": None if model is None else model_fingerprint(model),
    }
    todo = []
    for reps in sizes:
        n = len(pool[0]) * reps[0] * reps[1] * reps[2]
        path = out / f"N{n}.extxyz"
        wanted = json.loads(json.dumps({**settings, "replication": list(reps)}, sort_keys=True))
        if path.exists():
            try:
                old = read_starts(path)[0].info.get("settings")
            except Exception:  # noqa: BLE001 - any unreadable file is simply not ours to replace
                old = None
            if old != wanted:
                raise LegatoError(
                    f"{path} exists and was not made with these arguments; refusing to overwrite it"
                )
            print(f"{path}: done with the same arguments, skipped")
            continue
        todo.append((reps, n, path, wanted))
    if todo:
        ensure_writable_dir(out, "starts output folder")
    for reps, n, path, wanted in todo:
        boxes = build_starts(
            pool,
            reps,
            args.instances,
            args.seed,
            args.temperature_K,
            args.steps,
            model,
            timestep_fs=args.timestep_fs,
            friction_per_fs=args.friction_per_fs,
            max_redraws=args.max_redraws,
            quench_steps=args.quench_steps,
            quench_friction_per_fs=args.quench_friction_per_fs,
            progress=not args.no_progress,
        )
        write_starts(path, boxes, wanted)
        redraws = sum(int(b.info["redraws"]) for b in boxes)
        print(f"{path}: {len(boxes)} instances of {n} atoms ({replication_name(reps)}), {redraws} redraws")
    return 0
