"""``legato phonons STRUCTURE --model FILE``: the harmonic reference of a model: relax, then
the phonon DOS of a periodic structure (phonopy, finite displacements, q-mesh) or the
normal modes of a molecule (ASE Vibrations), per species and neutron-weighted.

STRUCTURE is an ASE-readable file, or the name of a molecule of ASE's g2 set (e.g. NH3).
See docs/pimd.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from legato.errors import LegatoError

EXAMPLES = """\
  legato phonons NH3 --model runs/small_legato/best_model.pt --output runs/phonons_nh3
  legato data crystal --cells 1 --hydrogen --out nh3_cell.extxyz   (then:)
  legato phonons nh3_cell.extxyz --model runs/small_legato/best_model.pt --supercell 2 2 2 --mesh 8 8 8
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "structure", help="structure file (ASE-readable) or an ASE g2 molecule name such as NH3"
    )
    parser.add_argument("--model", required=True, metavar="FILE", help="model file written by legato train")
    parser.add_argument("--index", type=int, default=0, metavar="K", help="frame of the structure file")
    parser.add_argument("--molecule", action="store_true", help="treat the structure as a molecule (no cell)")
    parser.add_argument(
        "--masses", nargs="+", default=[], metavar="EL=M", help="override masses (amu), e.g. H=2.014 for ND3"
    )
    parser.add_argument("--no-relax", action="store_true", help="use the structure as given")
    parser.add_argument("--fmax", type=float, default=1e-3, metavar="F", help="relaxation force limit (eV/Å)")
    parser.add_argument("--max-steps", type=int, default=1000, metavar="N", help="relaxation step limit")
    parser.add_argument("--fixed-cell", action="store_true", help="relax positions only, not the cell")
    parser.add_argument(
        "--supercell", type=int, nargs=3, default=[2, 2, 2], metavar="N", help="phonopy supercell"
    )
    parser.add_argument("--mesh", type=int, nargs=3, default=[8, 8, 8], metavar="N", help="q-mesh of the DOS")
    parser.add_argument(
        "--displacement", type=float, default=0.01, metavar="A", help="finite displacement (Å)"
    )
    parser.add_argument(
        "--sigma-mev", type=float, default=1.0, metavar="S", help="Gaussian smearing of the DOS (meV)"
    )
    parser.add_argument("--max-mev", type=float, default=500.0, metavar="E", help="upper limit of the plot")
    parser.add_argument("--device", default="cpu", help="torch device of the model")
    parser.add_argument("--output", "-o", metavar="DIR", default="phonons", help="output folder")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace existing result files in the folder"
    )


def load_structure(spec: str, index: int, molecule: bool):
    import ase.build
    from ase.collections import g2

    from legato.data import read_frames

    path = Path(spec)
    if path.exists():
        frames = read_frames(path)
        if not -len(frames) <= index < len(frames):
            raise LegatoError(f"{path} has {len(frames)} frames; --index {index} is out of range")
        atoms = frames[index]
    elif spec in g2.names:
        atoms = ase.build.molecule(spec)
        molecule = True
    else:
        raise LegatoError(f"no such file, and not an ASE g2 molecule name: {spec}")
    atoms = atoms.copy()
    if molecule:
        atoms.pbc = False
        atoms.cell = None
        atoms.center()
    elif not atoms.pbc.all():
        raise LegatoError(f"{spec} is not periodic in 3-D; add --molecule for normal modes")
    return atoms, molecule


def set_masses(atoms, items: list[str]) -> None:
    import numpy as np

    masses = atoms.get_masses()
    symbols = np.array(atoms.get_chemical_symbols())
    for item in items:
        el, _, value = item.partition("=")
        try:
            m = float(value)
        except ValueError:
            raise LegatoError(f"--masses takes EL=MASS, got {item}") from None
        if el not in symbols or not m > 0:
            raise LegatoError(f"--masses {item}: no element {el} in the structure, or mass <= 0")
        masses[symbols == el] = m
    atoms.set_masses(masses)


def run(args: argparse.Namespace) -> int:
    import ase.io

    from legato.calculator import LegatoCalculator
    from legato.fileio import atomic_write_text, ensure_writable_dir
    from legato.models import load_model
    from legato.spectra import phonons
    from legato.spectra.report import refuse_existing, write_dos
    from legato.spectra.vacf import CM1_PER_THZ, MEV_PER_THZ

    if not Path(args.model).is_file():
        raise LegatoError(f"model file not found: {args.model}")
    atoms, molecule = load_structure(args.structure, args.index, args.molecule)
    set_masses(atoms, args.masses)
    out = ensure_writable_dir(args.output, "phonons output folder")
    refuse_existing([out / "relaxed.extxyz", out / "modes.csv", out / "gamma_modes.csv"], args.overwrite)
    # float64: differences of forces over 0.01 Å need more than float32's 7 digits
    calc = LegatoCalculator(load_model(args.model, map_location=args.device).double(), device=args.device)
    meta: dict = {"structure": args.structure, "model": str(args.model), "molecule": molecule}
    if not args.no_relax:
        rel = phonons.relax(atoms, calc, args.fmax, args.max_steps, cell=not args.fixed_cell)
        atoms = rel.atoms
        meta["relaxation"] = {
            "steps": rel.steps,
            "max_force_eV_A": rel.max_force_eV_A,
            "cell": rel.cell_relaxed,
        }
        print(
            f"relaxed in {rel.steps} steps to max |F| {rel.max_force_eV_A:.2e} eV/Å "
            f"(cell relaxed: {rel.cell_relaxed})"
        )
    atoms.calc = None
    ase.io.write(out / "relaxed.extxyz", atoms)
    if molecule:
        e = phonons.molecule_modes(atoms, calc, args.displacement)
        rows = "mode,energy_meV,wavenumber_cm1\n" + "".join(
            f"{k},{x:.4f},{x / MEV_PER_THZ * CM1_PER_THZ:.2f}\n" for k, x in enumerate(e)
        )
        atomic_write_text(out / "modes.csv", rows)
        inner = e[6:] if len(atoms) > 2 else e[5:]
        print(
            "modes (cm-1, without the rigid-body ones): " + ", ".join(f"{x * 8.0655439:.0f}" for x in inner)
        )
        print(f"wrote {out / 'modes.csv'}, {out / 'relaxed.extxyz'}")
        return 0
    res = phonons.phonon_dos(
        atoms, calc, tuple(args.supercell), tuple(args.mesh), args.displacement, args.sigma_mev / MEV_PER_THZ
    )
    g = phonons.gamma_meV(res)
    atomic_write_text(
        out / "gamma_modes.csv",
        "mode,energy_meV,wavenumber_cm1\n"
        + "".join(f"{k},{x:.4f},{x * 8.0655439:.2f}\n" for k, x in enumerate(g)),
    )
    curves = {k: res.dos[k] for k in res.dos if k != "weighted"}
    curves["neutron_weighted"] = res.dos["weighted"]
    meta.update(
        {
            "supercell": args.supercell,
            "mesh": args.mesh,
            "displacement_A": args.displacement,
            "n_displacements": res.n_displacements,
            "sigma_meV": args.sigma_mev,
            "imaginary_modes_at_gamma": int((g < -0.1).sum()),
        }
    )
    title = f"harmonic phonon DOS ({len(atoms)} atoms, {args.supercell} supercell, {args.mesh} mesh)"
    paths = write_dos(
        out, "phonon_dos", res.frequency_THz, curves, meta, title, args.max_mev, "", args.overwrite
    )
    print(
        f"{res.n_displacements} displaced supercells; Γ: {meta['imaginary_modes_at_gamma']} imaginary modes"
    )
    print("wrote " + ", ".join(str(p) for p in [*paths, out / "gamma_modes.csv", out / "relaxed.extxyz"]))
    return 0
