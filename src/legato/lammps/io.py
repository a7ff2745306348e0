"""LAMMPS files for legato models: data files and inputs for a structure, and the thermo
table and per-atom dumps read back (in ASE's frame and units: eV, Å, eV/Å³)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.lammps import Prism

from legato.errors import LegatoError
from legato.fileio import atomic_write_text

#: thermo columns written by :func:`input_script` (pressures in bar, energies in eV)
THERMO = ("step", "temp", "pe", "ke", "etotal", "press", "pxx", "pyy", "pzz", "pxy", "pxz", "pyz")
#: per-atom dump columns: forces, energies (compute pe/atom), virial stresses (stress/atom)
DUMP = ("id", "type", "x", "y", "z", "fx", "fy", "fz", "c_pe_atom")
DUMP += tuple(f"c_s_atom[{k}]" for k in range(1, 7))


#: LAMMPS's eV/Å³ → bar factor in units metal (force->nktv2p); not ASE's 1/units.bar, which
#: uses a newer elementary charge and differs by 8e-8 relative
NKTV2P_METAL = 1.6021765e6


def write_data(atoms: Atoms, path: str | Path, type_names: list[str], velocities: bool = False) -> Prism:
    """LAMMPS data file (atom_style atomic, units metal) with atom types in model species
    order and the structure's own masses; returns the Prism mapping LAMMPS's frame to ASE's.
    Atom ids are 1..N in the structure's order."""
    from ase.io.lammpsdata import write_lammps_data

    unknown = sorted(set(atoms.get_chemical_symbols()) - set(type_names))
    if unknown:
        raise LegatoError(f"the structure has elements {unknown} the model does not know ({type_names})")
    if not all(atoms.pbc):
        raise LegatoError("LAMMPS runs here need a structure periodic in all three directions")
    prism = Prism(atoms.cell.array)
    buf = io.StringIO()
    write_lammps_data(
        buf, atoms, specorder=list(type_names), prismobj=prism, masses=True, velocities=velocities,
        units="metal", atom_style="atomic",
    )  # fmt: skip
    atomic_write_text(path, buf.getvalue())
    return prism


def input_script(
    data_file: str,
    model_file: str,
    type_names: list[str],
    body: str,
    dtype: str | None = None,
    threads: int | None = None,
    thermo_every: int = 1,
    dump_file: str | None = None,
    dump_every: int = 1,
    skin: float = 1.0,
    chunk: int | None = None,
) -> str:
    """A complete LAMMPS input: the model on the data file, thermo columns :data:`THERMO`
    at full precision, optionally per-atom dumps (:data:`DUMP`), then ``body`` (fixes, runs)."""
    style = "legato" + (f" threads {threads}" if threads else "") + (f" dtype {dtype}" if dtype else "")
    style += f" chunk {chunk}" if chunk is not None else ""
    lines = [
        "units metal",
        "atom_style atomic",
        "atom_modify map array",
        "boundary p p p",
        f"read_data {data_file}",
        f"pair_style {style}",
        f"pair_coeff * * {model_file} {' '.join(type_names)}",
        f"neighbor {skin} bin",
        "neigh_modify every 1 delay 0 check yes",
        "compute pe_atom all pe/atom",
        "compute s_atom all stress/atom NULL virial",
        f"thermo_style custom {' '.join(THERMO)}",
        "thermo_modify format float %.16e norm no lost error",
        f"thermo {thermo_every}",
    ]
    if dump_file:
        lines += [
            f"dump per_atom all custom {dump_every} {dump_file} {' '.join(DUMP)}",
            "dump_modify per_atom sort id format float %.16e",
        ]
    return "\n".join(lines) + "\n" + body.strip() + "\n"


_ALIASES = {"poteng": "pe", "kineng": "ke", "toteng": "etotal"}  # LAMMPS's header names


def read_thermo(path: str | Path) -> list[dict[str, np.ndarray]]:
    """Thermo tables of a LAMMPS log, one dict (column name, lower case → values) per run."""
    runs: list[dict[str, np.ndarray]] = []
    header: list[str] | None = None
    rows: list[list[float]] = []
    for line in Path(path).read_text(errors="replace").splitlines():
        tokens = line.split()
        if tokens and tokens[0] == "Step":
            header, rows = [_ALIASES.get(t.lower(), t.lower()) for t in tokens], []
            continue
        if header is None:
            continue
        if line.startswith("Loop time of"):
            runs.append({k: np.array([r[n] for r in rows]) for n, k in enumerate(header)})
            header = None
            continue
        if len(tokens) == len(header):
            try:
                rows.append([float(t) for t in tokens])
            except ValueError:
                pass  # a warning line inside the table
    if header is not None and rows:  # a run that stopped without its summary (halt, crash)
        runs.append({k: np.array([r[n] for r in rows]) for n, k in enumerate(header)})
    return runs


def read_dump(path: str | Path) -> list[dict[str, np.ndarray]]:
    """Frames of a ``dump custom`` file: "step", "box" (the BOX BOUNDS lines) and one array
    per column, rows sorted by atom id."""
    frames: list[dict[str, np.ndarray]] = []
    lines = Path(path).read_text().splitlines()
    k = 0
    while k < len(lines):
        if lines[k].startswith("ITEM: TIMESTEP"):
            step = int(lines[k + 1])
            n = int(lines[k + 3])
            box = np.array([[float(v) for v in lines[k + 5 + d].split()] for d in range(3)])
            cols = lines[k + 8].split()[2:]
            data = np.loadtxt(lines[k + 9 : k + 9 + n], ndmin=2)
            order = np.argsort(data[:, cols.index("id")])
            frame = {"step": np.array(step), "box": box}
            frame.update({c: data[order, i] for i, c in enumerate(cols)})
            frames.append(frame)
            k += 9 + n
        else:
            k += 1
    return frames


def frame_results(frame: dict[str, np.ndarray], thermo_row: dict[str, float], prism: Prism, volume: float):
    """ASE-frame results of one dumped frame at zero velocities: energy, energies [N],
    forces [N, 3], stress [3, 3] (from the thermo pressure) and stress_atoms [3, 3] (the
    per-atom virials summed, over the volume)."""
    forces = prism.vector_to_ase(np.stack([frame["fx"], frame["fy"], frame["fz"]], axis=1))
    p = thermo_row
    press = np.array(
        [[p["pxx"], p["pxy"], p["pxz"]], [p["pxy"], p["pyy"], p["pyz"]], [p["pxz"], p["pyz"], p["pzz"]]]
    )
    s = [frame[f"c_s_atom[{k}]"].sum() for k in range(1, 7)]
    s_atoms = np.array([[s[0], s[3], s[4]], [s[3], s[1], s[5]], [s[4], s[5], s[2]]])
    return {
        "energy": float(p["pe"]),
        "energies": frame["c_pe_atom"],
        "forces": forces,
        "stress": prism.tensor2_to_ase(-press / NKTV2P_METAL),
        "stress_atoms": prism.tensor2_to_ase(s_atoms / NKTV2P_METAL / volume),
    }
