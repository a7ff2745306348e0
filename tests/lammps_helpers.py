"""Shared pieces of the LAMMPS tests: skip reason, deployed small models, structures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms
from conftest import random_atoms, small_model

from legato.lammps import available

REASON = available()
needs_lammps = pytest.mark.skipif(REASON is not None, reason=f"LAMMPS plugin unavailable: {REASON}")
DATA = Path(__file__).resolve().parents[1] / "data" / "nh3_liquid_gfn1.extxyz.gz"


def deploy(folder: Path, dtype: torch.dtype, seed: int = 0, **over) -> tuple[Path, Path]:
    """(legato model file, TorchScript file) of ``small_model(dtype, seed)``."""
    from legato import save_model
    from legato.models import export_torchscript

    model = small_model(dtype, seed, **over)
    name = str(dtype).replace("torch.", "")
    pt, pth = folder / f"{name}_{seed}.pt", folder / f"{name}_{seed}.pth"
    save_model(model, pt)
    export_torchscript(model, pth)
    return pt, pth


def shipped_frame(index: int = 0) -> Atoms:
    """One 128-atom NH3 frame of the shipped dataset (calculator results dropped)."""
    from legato.data import read_frames

    atoms = read_frames(DATA, index=index)[0]
    atoms.calc = None
    return atoms


def triclinic_cell() -> Atoms:
    cell = np.array([[7.0, 0.0, 0.0], [1.5, 6.5, 0.0], [-0.8, 1.1, 6.8]])
    return random_atoms(16, cell=cell, seed=5)


def small_box() -> Atoms:
    """4 atoms in a skewed 3.3 Å cell: r_max = 3.5 Å exceeds the box, so neighbours include
    several images of each atom, itself among them."""
    cell = np.array([[3.3, 0.0, 0.0], [0.4, 3.2, 0.0], [0.3, -0.2, 3.4]])
    return random_atoms(4, cell=cell, seed=2, min_dist=1.2)


def reference(atoms: Atoms, model_pt: Path) -> dict[str, np.ndarray]:
    from legato.calculator import LegatoCalculator

    a = atoms.copy()
    a.calc = LegatoCalculator(model_pt, compile=False)
    return {
        "energy": a.get_potential_energy(),
        "energies": a.get_potential_energies(),
        "forces": a.get_forces(),
        "stress": a.get_stress(voigt=False),
    }
