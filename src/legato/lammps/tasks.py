"""Whole LAMMPS jobs for a structure and a deployed model: a single point (energy,
per-atom energies, forces, stress) and MD inputs."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

from ase import Atoms

from legato.errors import LegatoError
from legato.fileio import atomic_write_text, ensure_writable_dir
from legato.lammps.io import frame_results, input_script, read_dump, read_thermo, write_data
from legato.lammps.runtime import run_lammps


def model_metadata(model_file: str | Path) -> dict[str, Any]:
    """The ``legato_metadata.json`` of a file written by ``legato deploy`` (type_names,
    r_max, dtype, ...), read without loading the model."""
    path = Path(model_file)
    if not path.is_file():
        raise LegatoError(f"model file not found: {path}")
    try:
        with zipfile.ZipFile(path) as zf:
            name = next((n for n in zf.namelist() if n.endswith("/extra/legato_metadata.json")), None)
            if name is None:
                raise LegatoError(f"{path} has no legato metadata; write it with `legato deploy`")
            return json.loads(zf.read(name))
    except zipfile.BadZipFile:
        raise LegatoError(f"{path} is not a TorchScript file written by `legato deploy`") from None


def single_point(
    atoms: Atoms,
    model_file: str | Path,
    folder: str | Path,
    ranks: int = 1,
    threads: int = 1,
    dtype: str | None = None,
    chunk: int | None = None,
) -> dict[str, Any]:
    """LAMMPS ``run 0`` of ``atoms`` with the model, in ``folder``: energy (eV), energies
    [N], forces [N, 3] (eV/Å), stress [3, 3] (eV/Å³, ASE sign) and stress_atoms [3, 3]
    (the per-atom virials summed), all in the structure's frame and atom order."""
    folder = ensure_writable_dir(folder)
    model_file = Path(model_file).resolve()
    names = model_metadata(model_file)["type_names"]
    prism = write_data(atoms, folder / "structure.data", names)
    body = "velocity all set 0.0 0.0 0.0\nrun 0\n"
    script = input_script(
        "structure.data",
        str(model_file),
        names,
        body,
        dtype=dtype,
        threads=threads,
        dump_file="atoms.dump",
        chunk=chunk,
    )
    atomic_write_text(folder / "in.lmp", script)
    run_lammps("in.lmp", ranks=ranks, threads=threads, cwd=folder)
    thermo = read_thermo(folder / "log.lammps")[-1]
    frame = read_dump(folder / "atoms.dump")[-1]
    row = {k: float(v[-1]) for k, v in thermo.items()}
    return frame_results(frame, row, prism, atoms.get_volume())
