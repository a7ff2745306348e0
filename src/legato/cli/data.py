"""``legato data``: build liquid boxes, label frames with a QM method, replicate boxes, and
run the sampling pipeline of the shipped dataset."""

from __future__ import annotations

import argparse
import json
import os

from legato.errors import LegatoError

EXAMPLES = """\
  legato data liquid --molecules 32 --density-g-cm3 0.73 --seed 0 --out box.extxyz
  legato data label box.extxyz box_labelled.extxyz --calculator tblite:GFN1-xTB --workers 2
  legato data replicate box.extxyz --k 2 --out box_k2.extxyz
  legato data stats data/nh3_liquid_gfn1.extxyz.gz"""

#: per action: (help, example line)
ACTIONS = {
    "liquid": (
        "random periodic box of intact molecules",
        "legato data liquid --molecules 32 --density-g-cm3 0.73 --seed 0 --out box.extxyz",
    ),
    "crystal": (
        "phase-I ammonia crystal (cubic P2_13), cells x cells x cells unit cells",
        "legato data crystal --cells 2 --temperature-K 150 --out crystal.extxyz",
    ),
    "label": (
        "energy, forces and stress of every frame with a QM method (resumable)",
        "legato data label box.extxyz box_labelled.extxyz --calculator tblite:GFN1-xTB --workers 2",
    ),
    "replicate": (
        "k x k x k copies of a box plus a small random displacement",
        "legato data replicate box.extxyz --k 2 --perturb-A 0.01 --out box_k2.extxyz",
    ),
    "sample": (
        "the sampling pipeline that built the shipped dataset (md, derive, finalize)",
        "legato data sample md --out-dir sampling --temperatures 200 300 --boxes 1 --steps 20",
    ),
    "stats": (
        "datasheet statistics of a labelled dataset, printed as JSON",
        "legato data stats data/nh3_liquid_gfn1.extxyz.gz --r-max 6",
    ),
}
STAGES = {
    "md": (
        "QM-driven Langevin MD from freshly packed boxes (resumable)",
        "legato data sample md --out-dir sampling --temperatures 200 300 --boxes 1 --steps 20",
    ),
    "derive": (
        "strained and displaced copies of the MD frames (unlabelled)",
        "legato data sample derive sampling --strained 8 --displaced 8 --out derived.extxyz",
    ),
    "finalize": (
        "merge MD and labelled derived frames, split, compress",
        "legato data sample finalize sampling --derived derived_labelled.extxyz "
        "--out mydata.extxyz.gz --split mydata.split.json",
    ),
}


def _sub(sub, name: str, table: dict) -> argparse.ArgumentParser:
    from legato.cli.main import HelpFormatter

    helptext, example = table[name]
    return sub.add_parser(
        name,
        help=helptext,
        description=helptext,
        formatter_class=HelpFormatter,
        epilog=f"example:\n  {example}",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    p = _sub(sub, "liquid", ACTIONS)
    p.add_argument("--molecule", default="NH3", help="molecule formula from ASE's g2 set")
    p.add_argument("--molecules", type=int, required=True, help="number of molecules")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--density-g-cm3", type=float, help="mass density (g/cm³) with the box's masses")
    g.add_argument("--box-length-A", type=float, help="cube edge in Å instead of a density")
    g.add_argument(
        "--paper", action="store_true", help="108 ND3 in the paper's 16.515 Å box (implies --deuterium)"
    )
    p.add_argument("--seed", type=int, default=0, help="random seed of the packing")
    p.add_argument("--deuterium", action="store_true", help="hydrogen mass 2.014 amu")
    p.add_argument(
        "--min-distance-A", type=float, default=1.9, help="closest allowed intermolecular atom pair (Å)"
    )
    p.add_argument("--out", required=True, help="new output file (extxyz, or .lmp for LAMMPS data)")

    p = _sub(sub, "crystal", ACTIONS)
    p.add_argument("--cells", type=int, default=2, help="unit cells per edge (4 NH3 per cell)")
    p.add_argument(
        "--temperature-K",
        type=float,
        default=150.0,
        help="sets the lattice constant (measured values, 77-171 K, interpolated; below 195 K)",
    )
    p.add_argument("--lattice-A", type=float, help="lattice constant (Å) instead of the temperature's")
    p.add_argument("--hydrogen", action="store_true", help="H masses 1.008 amu (default: deuterium, 2.014)")
    p.add_argument("--out", required=True, help="new output file (extxyz, or .lmp for LAMMPS data)")

    p = _sub(sub, "label", ACTIONS)
    p.add_argument("input", help="frames to label (any ASE-readable file)")
    p.add_argument("output", help="plain .extxyz output, appended frame by frame; rerun to resume")
    p.add_argument(
        "--calculator",
        default="tblite:GFN1-xTB",
        help="tblite:GFN1-xTB, tblite:GFN2-xTB, emt, lj or python:MODULE:FACTORY",
    )
    p.add_argument("--workers", type=int, default=1, help="parallel processes")
    p.add_argument("--accuracy", type=float, help="tblite numerical accuracy (tblite's default: 1.0)")
    p.add_argument(
        "--electronic-temperature-K",
        type=float,
        help="tblite electronic temperature (tblite default: 300 K)",
    )
    p.add_argument("--max-iterations", type=int, help="tblite SCF iterations (tblite's default: 250)")

    p = _sub(sub, "replicate", ACTIONS)
    p.add_argument("input", help="structure file; its last frame is replicated")
    p.add_argument("--k", type=int, required=True, help="copies along each cell vector (k³ copies in all)")
    p.add_argument(
        "--perturb-A", type=float, default=0.01, help="Gaussian σ of the displacement per coordinate (Å)"
    )
    p.add_argument("--seed", type=int, default=0, help="random seed of the displacement")
    p.add_argument("--out", required=True, help="new output file (extxyz, or .lmp for LAMMPS data)")

    p = _sub(sub, "sample", ACTIONS)
    ss = p.add_subparsers(dest="stage", metavar="STAGE", required=True)
    m = _sub(ss, "md", STAGES)
    m.add_argument("--out-dir", required=True, help="folder of the trajectories (rerun to resume)")
    m.add_argument(
        "--temperatures", type=float, nargs="+", default=[200, 250, 300, 400], help="temperatures (K)"
    )
    m.add_argument("--boxes", type=int, default=3, help="independent boxes per temperature")
    m.add_argument("--seed", type=int, default=0, help="random seed of the packings and thermostats")
    m.add_argument(
        "--phase",
        choices=("liquid", "crystal"),
        default="liquid",
        help="liquid: boxes packed at --density-g-cm3; crystal: phase-I ammonia (--cells³ unit cells "
        "at the temperature's lattice constant; --molecules and the density are then not used)",
    )
    m.add_argument("--cells", type=int, default=2, help="crystal unit cells per edge (4 molecules each)")
    m.add_argument("--molecules", type=int, default=32, help="molecules per box")
    m.add_argument(
        "--density-g-cm3",
        type=float,
        default=0.7982,
        help="mass density with deuterium masses (g/cm³; the paper's box)",
    )
    m.add_argument("--equil-steps", type=int, default=40, help="equilibration steps, not recorded")
    m.add_argument("--steps", type=int, default=130, help="production steps per trajectory")
    m.add_argument("--stride", type=int, default=1, help="record every this many production steps")
    m.add_argument("--timestep-fs", type=float, default=2.0, help="time step (fs)")
    m.add_argument("--friction-per-fs", type=float, default=0.01, help="Langevin friction (1/fs)")
    m.add_argument("--calculator", default="tblite:GFN1-xTB", help="QM method, as for legato data label")
    m.add_argument("--workers", type=int, default=2, help="parallel processes")
    d = _sub(ss, "derive", STAGES)
    d.add_argument("md_dir", help="folder written by legato data sample md")
    d.add_argument("--strained", type=int, required=True, help="number of strained frames")
    d.add_argument("--displaced", type=int, required=True, help="number of displaced frames")
    d.add_argument("--seed", type=int, default=1, help="random seed")
    d.add_argument(
        "--compress",
        type=float,
        nargs=2,
        default=[0.85, 0.95],
        metavar=("LO", "HI"),
        help="range of compression scale factors",
    )
    d.add_argument(
        "--stretch",
        type=float,
        nargs=2,
        default=[1.05, 1.10],
        metavar=("LO", "HI"),
        help="range of stretch scale factors",
    )
    d.add_argument(
        "--displace-A",
        type=float,
        nargs=2,
        default=[0.01, 0.04],
        metavar=("LO", "HI"),
        help="range of the Gaussian displacement σ (Å)",
    )
    d.add_argument("--out", required=True, help="unlabelled frames (extxyz); must not exist")
    f = _sub(ss, "finalize", STAGES)
    f.add_argument("md_dir", help="folder written by legato data sample md")
    f.add_argument("--derived", help="labelled derived frames (output of legato data label)")
    f.add_argument("--out", required=True, help="dataset file (.extxyz or .extxyz.gz)")
    f.add_argument("--split", required=True, help="JSON file for the split indices")
    f.add_argument("--seed", type=int, default=0, help="random seed of the split")

    p = _sub(sub, "stats", ACTIONS)
    p.add_argument("input", help="labelled dataset (extxyz, .gz allowed)")
    p.add_argument("--r-max", type=float, default=6.0, help="neighbour cutoff (Å)")


def _refuse_existing(path: str) -> None:
    if os.path.exists(path):
        raise LegatoError(f"{path} exists; refusing to overwrite it")


def _write_atoms(atoms, path: str) -> None:
    """Write one box atomically; LAMMPS data for .lmp/.data, else extxyz."""
    import ase.io

    from legato.fileio import atomic_write, ensure_writable_file

    _refuse_existing(path)
    out = ensure_writable_file(path)
    with atomic_write(out) as fh:
        if out.suffix in (".lmp", ".data"):
            ase.io.write(
                fh, atoms, format="lammps-data", masses=True, specorder=["H", "N"], atom_style="atomic"
            )
        else:
            ase.io.write(fh, atoms, format="extxyz")


def run(args: argparse.Namespace) -> int:
    return {
        "liquid": _liquid,
        "crystal": _crystal,
        "label": _label,
        "replicate": _replicate,
        "sample": _sample,
        "stats": _stats,
    }[args.action](args)


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


def _crystal(args: argparse.Namespace) -> int:
    from legato.data.crystal import ammonia_crystal
    from legato.data.liquid import density_g_cm3

    _refuse_existing(args.out)
    atoms = ammonia_crystal(args.cells, args.temperature_K, args.lattice_A, deuterium=not args.hydrogen)
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
        if args.phase == "crystal":
            from legato.data.crystal import lattice_constant_A

            for t in args.temperatures:
                lattice_constant_A(t)  # one clear error for a temperature above melting
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
            phase=args.phase,
            cells=args.cells,
        )
        for r in sampling.run_md(plan, args.out_dir, workers=args.workers):
            print(json.dumps(r))
        return 0
    if args.stage == "derive":
        import ase.io

        from legato.fileio import atomic_write, ensure_writable_file

        _refuse_existing(args.out)
        ensure_writable_file(args.out)
        frames = sampling.derive_frames(
            sampling.load_md_frames(args.md_dir),
            args.strained,
            args.displaced,
            args.seed,
            compress=tuple(args.compress),
            stretch=tuple(args.stretch),
            displace_A=tuple(args.displace_A),
        )
        with atomic_write(args.out) as fh:
            ase.io.write(fh, frames, format="extxyz")
        print(f"{args.out}: {len(frames)} unlabelled frames")
        return 0
    summary = sampling.finalize(args.md_dir, args.derived, args.out, args.split, args.seed)
    print(json.dumps(summary))
    return 0
