"""Shared helpers for the training tests: a small labelled dataset made on the fly.

ASE's EMT potential on rattled 16-atom fcc Cu/Al cells: fast (milliseconds per frame),
periodic, with energies, forces and stresses. Written to a temporary folder, never
committed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def make_emt_dataset(
    path: Path, n_frames: int = 24, seed: int = 0, rattle: float = 0.12, stress: bool = False
) -> Path:
    """Write ``n_frames`` labelled frames to an extxyz file and return its path."""
    import ase.io
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator

    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(n_frames):
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 1))
        symbols = np.where(rng.random(len(atoms)) < 0.3, "Al", "Cu")
        atoms.set_chemical_symbols(symbols.tolist())
        strain = np.eye(3) + rng.normal(0.0, 0.01, (3, 3))
        atoms.set_cell(atoms.cell.array @ strain, scale_atoms=True)
        atoms.positions += rng.normal(0.0, rattle, atoms.positions.shape)
        atoms.calc = EMT()
        e, f, s = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
        labels = {"energy": e, "forces": f, "stress": s} if stress else {"energy": e, "forces": f}
        atoms.calc = SinglePointCalculator(atoms, **labels)
        atoms.info["split"] = ("train", "train", "train", "train", "validation", "test")[len(frames) % 6]
        frames.append(atoms)
    ase.io.write(path, frames, format="extxyz")
    return path


#: a small, fast Allegro (l_max 1, one layer, 4 channels, small MLPs)
SMALL_MODEL: dict[str, Any] = {
    "r_max": 4.0,
    "l_max": 1,
    "num_layers": 1,
    "env_embed_multiplicity": 4,
    "two_body_latent_mlp_latent_dimensions": [8, 16],
    "latent_mlp_latent_dimensions": [16],
    "edge_eng_mlp_latent_dimensions": [8],
    "num_bessel": 4,
}


def small_config(data: Path, run_dir: Path, **training: Any) -> dict[str, Any]:
    """A complete config dict for a seconds-long CPU run."""
    train = {
        "max_epochs": 3,
        "batch_size": 4,
        "dtype": "float64",
        "seed": 7,
        "num_threads": 1,
        "progress": False,
    }
    train.update(training)
    return {
        "run_dir": str(run_dir),
        "data": {"path": str(data), "n_train": 16, "n_val": 8},
        "model": dict(SMALL_MODEL),
        "optimizer": {"lr": 0.01},
        "training": train,
    }
