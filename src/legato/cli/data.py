"""``legato data``: build liquid boxes, label frames with a QM method, replicate boxes, and
run the sampling pipeline of the shipped dataset.

    legato data liquid --molecule NH3 --molecules 32 --density-g-cm3 0.73 --seed 0 --out F
    legato data label IN OUT --calculator tblite:GFN1-xTB --workers 2
    legato data replicate IN --k 2 --perturb-A 0.01 --seed 0 --out F
    legato data sample md --out-dir D --temperatures 200 250 300 400 --boxes 3 --seed 0
    legato data sample derive D --strained 64 --displaced 64 --seed 1 --out F
    legato data sample finalize D --derived F_labelled --out data/x.extxyz.gz --split S.json
    legato data stats data/x.extxyz.gz --r-max 6
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from legato.errors import LegatoError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    p = sub.add_parser("liquid", help="random periodic box of intact molecules")
    p.add_argument("--molecule", default="NH3", help="formula from ASE's g2 set (default NH3)")
    p.add_argument("--molecules", type=int, required=True, help="number of molecules")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--density-g-cm3", type=float, help="mass density with the box's masses")
    g.add_argument("--box-length-A", type=float, help="cube edge in Å instead of a density")
    g.add_argument(
        "--paper", action="store_true", help="108 ND3 in the paper's 16.515 Å box (implies --deuterium)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--deuterium", action="store_true", help="hydrogen mass 2.014 amu")
    p.add_argument(
        "--min-distance-A",
        type=float,
        default=1.9,
        help="closest allowed intermolecular atom pair (default 1.9 Å)",
    )
    p.add_argument("--out", required=True, help="output file (extxyz, or .lmp for LAMMPS data)")

    p = sub.add_parser("label", help="energy, forces, stress of every frame (resumable)")
    p.add_argument("input", help="frames to label (any ASE-readable file)")
    p.add_argument("output", help="plain .extxyz output, appended frame by frame")
    p.add_argument(
        "--calculator",
        default="tblite:GFN1-xTB",
        help="tblite:GFN1-xTB | tblite:GFN2-xTB | emt | lj | python:module:factory",
    )
    p.add_argument("--workers", type=int, default=1, help="parallel processes (default 1)")
    p.add_argument("--accuracy", type=float, help="tblite numerical accuracy (default 1.0)")
    p.add_argument(
        "--electronic-temperature-K", type=float, help="tblite electronic temperature (default 300 K)"
    )
    p.add_argument("--max-iterations", type=int, help="tblite SCF iterations (default 250)")

    p = sub.add_parser("replicate", help="k×k×k copies of a box plus a small perturbation")
    p.add_argument("input")
    p.add_argument("--k", type=int, required=True)
    p.add_argument(
        "--perturb-A", type=float, default=0.01, help="Gaussian σ of the displacement per coordinate (Å)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)

    p = sub.add_parser("sample", help="sampling pipeline of the shipped dataset")
    ss = p.add_subparsers(dest="stage", metavar="STAGE", required=True)
    m = ss.add_parser("md", help="QM-driven Langevin MD from freshly packed boxes (resumable)")
    m.add_argument("--out-dir", required=True)
    m.add_argument("--temperatures", type=float, nargs="+", default=[200, 250, 300, 400])
    m.add_argument("--boxes", type=int, default=3, help="independent boxes per temperature")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--molecules", type=int, default=32)
    m.add_argument(
        "--density-g-cm3",
        type=float,
        default=0.7982,
        help="with deuterium masses (default: the paper's box, 0.7982)",
    )
    m.add_argument("--equil-steps", type=int, default=40)
    m.add_argument("--steps", type=int, default=130, help="production steps per trajectory")
    m.add_argument("--stride", type=int, default=1)
    m.add_argument("--timestep-fs", type=float, default=2.0)
    m.add_argument("--friction-per-fs", type=float, default=0.01)
    m.add_argument("--calculator", default="tblite:GFN1-xTB")
    m.add_argument("--workers", type=int, default=2)
    d = ss.add_parser("derive", help="strained and displaced copies of MD frames (unlabelled)")
    d.add_argument("md_dir")
    d.add_argument("--strained", type=int, required=True)
    d.add_argument("--displaced", type=int, required=True)
    d.add_argument("--seed", type=int, default=1)
    d.add_argument(
        "--compress",
        type=float,
        nargs=2,
        default=[0.85, 0.95],
        metavar=("LO", "HI"),
        help="range of compression scale factors",
    )
    d.add_argument("--stretch", type=float, nargs=2, default=[1.05, 1.10], metavar=("LO", "HI"))
    d.add_argument(
        "--displace-A",
        type=float,
        nargs=2,
        default=[0.01, 0.04],
        metavar=("LO", "HI"),
        help="range of the Gaussian displacement σ (Å)",
    )
    d.add_argument("--out", required=True)
    f = ss.add_parser("finalize", help="merge, split, compress")
    f.add_argument("md_dir")
    f.add_argument("--derived", help="labelled derived frames (output of legato data label)")
    f.add_argument("--out", required=True, help="dataset file (.extxyz or .extxyz.gz)")
    f.add_argument("--split", required=True, help="JSON file for the split indices")
    f.add_argument("--seed", type=int, default=0)

    p = sub.add_parser("stats", help="datasheet statistics of a labelled dataset (JSON)")
    p.add_argument("input")
    p.add_argument("--r-max", type=float, default=6.0, help="neighbour cutoff (Å)")


def _refuse_existing(path: str) -> None:
    if os.path.exists(path):
        raise LegatoError(f"{path} exists; refusing to overwrite it")


def _write_atoms(atoms, path: str) -> None:
    """Write one box atomically (temp + rename); LAMMPS data for .lmp/.data, else extxyz."""
    import ase.io

    _refuse_existing(path)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    if out.suffix in (".lmp", ".data"):
        ase.io.write(tmp, atoms, format="lammps-data", masses=True, specorder=["H", "N"], atom_style="atomic")
    else:
        ase.io.write(tmp, atoms, format="extxyz")
    os.replace(tmp, out)


def run(args: argparse.Namespace) -> int:
    return {"liquid": _liquid, "label": _label, "replicate": _replicate, "sample": _sample, "stats": _stats}[
        args.action
    ](args)


def _stats(args: argparse.Namespace) -> int:
    from legato.data import read_frames
    from legato.data.sampling import describe_dataset

    print(json.dumps(describe_dataset(read_frames(args.input), r_max=args.r_max), indent=2))
    return 0


def _liquid(args: argparse.Namespace) -> int:
    from legato.data.liquid import build_liquid, density_g_cm3, paper_box

    _refuse_existing(args.out)
    if args.paper:
        atoms = paper_box(seed=args.seed)
    else:
        if args.density_g_cm3 is None and args.box_length_A is None:
            raise LegatoError("give --density-g-cm3, --box-length-A or --paper")
        atoms = build_liquid(
            args.molecule,
            args.molecules,
            density_g_cm3=args.density_g_cm3,
            box_length_A=args.box_length_A,
            seed=args.seed,
            deuterium=args.deuterium,
            min_distance_A=args.min_distance_A,
        )
    _write_atoms(atoms, args.out)
    print(
        f"{args.out}: {len(atoms)} atoms, box {atoms.cell.lengths()[0]:.4f} Å, "
        f"{density_g_cm3(atoms):.4f} g/cm³"
    )
    return 0


def _label(args: argparse.Namespace) -> int:
    from legato.data import read_frames
    from legato.data.label import label_frames

    settings = {}
    if args.accuracy is not None:
        settings["accuracy"] = args.accuracy
    if args.electronic_temperature_K is not None:
        settings["electronic_temperature"] = args.electronic_temperature_K
    if args.max_iterations is not None:
        settings["max_iterations"] = args.max_iterations
    frames = read_frames(args.input)
    summary = label_frames(frames, args.output, args.calculator, settings=settings, workers=args.workers)
    print(json.dumps(summary))
    if summary["failed"]:
        print(f"{summary['failed']} frame(s) failed and were skipped: see {summary['failed_log']}")
    return 0


def _replicate(args: argparse.Namespace) -> int:
    from legato.data import read_frames
    from legato.data.liquid import replicate

    atoms = read_frames(args.input, index=-1)[-1]
    big = replicate(atoms, args.k, args.perturb_A, args.seed)
    _write_atoms(big, args.out)
    print(f"{args.out}: {len(big)} atoms, box {big.cell.lengths()[0]:.4f} Å")
    return 0


def _sample(args: argparse.Namespace) -> int:
    from legato.data import sampling

    if args.stage == "md":
        plan = sampling.plan_trajectories(
            args.temperatures,
            args.boxes,
            args.seed,
            equil_steps=args.equil_steps,
            steps=args.steps,
            stride=args.stride,
            timestep_fs=args.timestep_fs,
            friction_per_fs=args.friction_per_fs,
            molecules=args.molecules,
            density_g_cm3=args.density_g_cm3,
            calculator=args.calculator,
        )
        for r in sampling.run_md(plan, args.out_dir, workers=args.workers):
            print(json.dumps(r))
        return 0
    if args.stage == "derive":
        import ase.io

        _refuse_existing(args.out)
        frames = sampling.derive_frames(
            sampling.load_md_frames(args.md_dir),
            args.strained,
            args.displaced,
            args.seed,
            compress=tuple(args.compress),
            stretch=tuple(args.stretch),
            displace_A=tuple(args.displace_A),
        )
        tmp = args.out + ".tmp"
        ase.io.write(tmp, frames, format="extxyz")
        os.replace(tmp, args.out)
        print(f"{args.out}: {len(frames)} unlabelled frames")
        return 0
    summary = sampling.finalize(args.md_dir, args.derived, args.out, args.split, args.seed)
    print(json.dumps(summary))
    return 0
