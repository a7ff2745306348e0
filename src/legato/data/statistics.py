"""Dataset statistics used to build a model: ν̄, per-species shifts, force RMS."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from legato.data import keys as K
from legato.errors import LegatoError


@dataclass
class DatasetStats:
    avg_num_neighbors: float
    energy_shifts: list[float]  # per species, eV (least squares of E on composition)
    force_rms: float  # eV/Å over all components
    force_rms_per_species: list[float]
    force_std: float  # std of all force components (for the 5σ outlier rule)
    n_frames: int


def dataset_statistics(graphs: Sequence[dict[str, torch.Tensor]], n_species: int) -> DatasetStats:
    if not graphs:
        raise LegatoError("empty dataset")
    n_edges = sum(g[K.EDGE_INDEX].shape[1] for g in graphs)
    n_atoms = sum(int(g[K.NUM_ATOMS].sum()) for g in graphs)
    avg_nn = n_edges / max(n_atoms, 1)
    shifts = [0.0] * n_species
    if all(K.TOTAL_ENERGY in g for g in graphs):
        comp = np.zeros((len(graphs), n_species))
        e = np.zeros(len(graphs))
        for k, g in enumerate(graphs):
            comp[k] = np.bincount(g[K.SPECIES].numpy(), minlength=n_species)
            e[k] = float(g[K.TOTAL_ENERGY].sum())
        shifts = _composition_fit(comp, e).tolist()
    f_rms, f_rms_s, f_std = 1.0, [1.0] * n_species, 1.0
    if all(K.FORCES in g for g in graphs):
        f = torch.cat([g[K.FORCES] for g in graphs]).double()
        s = torch.cat([g[K.SPECIES] for g in graphs])
        f_rms = float(f.pow(2).mean().sqrt())
        f_std = float(f.std())
        f_rms_s = [
            float(f[s == k].pow(2).mean().sqrt()) if bool((s == k).any()) else 0.0 for k in range(n_species)
        ]
    return DatasetStats(avg_nn, shifts, f_rms, f_rms_s, f_std, len(graphs))


def _composition_fit(comp: np.ndarray, e: np.ndarray) -> np.ndarray:
    """Least-squares per-species energies. With a single composition (rank-deficient),
    the minimum-norm solution is used, which puts the mean energy per atom on every species
    in proportion to its count."""
    sol, *_ = np.linalg.lstsq(comp, e, rcond=None)
    return sol
