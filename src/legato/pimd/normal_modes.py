"""Ring-polymer bookkeeping: the bead layout in a batched :class:`MDState`, the normal-mode
transformation and the free ring-polymer frequencies (i-PI conventions).

A PIMD batch holds R ring polymers of P beads each as R·P MD replicas, polymer-major:
replica ``r·P + k`` is bead k of ring polymer r (its ``replica_ids`` follow the same rule,
so ``replica_id // P`` is the polymer and ``replica_id % P`` the bead). Every bead is a whole
copy of the polymer's system, so one batched potential call evaluates all beads of all
polymers.

Conventions (as i-PI): the ring polymer is sampled at T_P = P·T with physical masses on every
bead, spring energy Σ_k ½ m ω_P² (q_k − q_{k+1})², ω_P = P k_B T / ħ. The orthonormal real
transform C [P, P] (q̃ = Cᵀq) has columns 1/√P; √(2/P) cos(2πjk/P) for 0 < k < P/2;
(−1)ʲ/√P for k = P/2; √(2/P) sin(2πjk/P) for k > P/2. Mode k has the free frequency
ω_k = 2 ω_P sin(kπ/P) (k and P − k are degenerate; the centroid k = 0 has ω = 0).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from ase import units as _u

from legato.md.state import DTYPE, MDState
from legato.units import KB_EV_PER_K

#: ħ in eV × ASE time units (the engine's internal time; 1 fs = legato.units.FS)
HBAR_EV_T = _u._hbar * _u.J * _u.second


def ring_frequency(n_beads: int, temperature_K: float) -> float:
    """ω_P = P k_B T / ħ in 1/(ASE time)."""
    return n_beads * KB_EV_PER_K * float(temperature_K) / HBAR_EV_T


def free_frequencies(n_beads: int, temperature_K: float) -> torch.Tensor:  # [P] 1/t_ASE
    """ω_k = 2 ω_P sin(kπ/P), k = 0..P−1, in the order of :func:`normal_mode_matrix`."""
    k = torch.arange(n_beads, dtype=DTYPE)
    return 2.0 * ring_frequency(n_beads, temperature_K) * torch.sin(k * np.pi / n_beads)


def normal_mode_matrix(n_beads: int) -> torch.Tensor:  # [P, P], C[j, k]
    """Orthonormal real transform: bead j, mode k (see the module doc); q̃ = Cᵀ q."""
    p = n_beads
    j = np.arange(p)[:, None]
    k = np.arange(p)[None, :]
    c = np.empty((p, p))
    c[:, :1] = 1.0 / np.sqrt(p)
    cos_part = (k >= 1) & (2 * k < p)
    sin_part = 2 * k > p
    arg = 2.0 * np.pi * j * k / p
    c = np.where(cos_part, np.sqrt(2.0 / p) * np.cos(arg), c)
    c = np.where(sin_part, np.sqrt(2.0 / p) * np.sin(arg), c)
    if p % 2 == 0:
        c[:, p // 2] = (-1.0) ** np.arange(p) / np.sqrt(p)
    return torch.from_numpy(c)


@dataclass(frozen=True)
class RingLayout:
    """Where the beads of each atom of each polymer sit in the flat batch.

    N = the atoms of all polymers (one copy each), ordered by polymer then atom.
    """

    n_beads: int
    bead_view: torch.Tensor  # [P, N] long, flat atom index of bead k of polymer atom n
    polymer: torch.Tensor  # [N] long, batch position of the atom's polymer
    masses: torch.Tensor  # [N] amu
    species: torch.Tensor  # [N] long
    n_polymers: int

    def gather(self, x: torch.Tensor) -> torch.Tensor:  # [n_atoms, 3] → [P, N, 3]
        return x[self.bead_view]

    def scatter(self, y: torch.Tensor) -> torch.Tensor:  # [P, N, 3] → [n_atoms, 3]
        out = torch.empty((self.bead_view.numel(), *y.shape[2:]), dtype=y.dtype)
        out[self.bead_view.reshape(-1)] = y.reshape(-1, *y.shape[2:])
        return out

    def polymer_sum(self, x: torch.Tensor) -> torch.Tensor:  # [N, ...] → [R, ...]
        out = torch.zeros((self.n_polymers, *x.shape[1:]), dtype=x.dtype)
        return out.index_add_(0, self.polymer, x)

    def atoms_per_polymer(self) -> torch.Tensor:  # [R] long
        return torch.bincount(self.polymer, minlength=self.n_polymers)


def ring_layout(state: MDState, n_beads: int) -> RingLayout:
    """The layout of a polymer-major PIMD batch (see the module doc); checks the ordering."""
    p = int(n_beads)
    n_rep = state.n_replicas
    if n_rep % p:
        raise ValueError(f"{n_rep} replicas is not a whole number of {p}-bead ring polymers")
    ids = state.replica_ids.view(-1, p)  # [R, P]
    if not bool((ids % p == torch.arange(p)).all()) or not bool((ids // p == ids[:, :1] // p).all()):
        raise ValueError("replicas are not ordered polymer by polymer, bead by bead")
    counts = state.atoms_per_replica().view(-1, p)  # [R, P]
    if not bool((counts == counts[:, :1]).all()):
        raise ValueError("the beads of a ring polymer must have the same atoms")
    starts = (torch.cumsum(state.atoms_per_replica(), 0) - state.atoms_per_replica()).view(-1, p)
    per_poly = counts[:, 0]  # [R]
    n_poly = per_poly.numel()
    polymer = torch.repeat_interleave(torch.arange(n_poly), per_poly)  # [N]
    offset = torch.cumsum(per_poly, 0) - per_poly
    local = torch.arange(polymer.numel()) - offset[polymer]  # [N]
    bead_view = starts[polymer].T + local[None, :]  # [P, N]
    return RingLayout(
        n_beads=p,
        bead_view=bead_view,
        polymer=polymer,
        masses=state.masses[bead_view[0]],
        species=state.species[bead_view[0]],
        n_polymers=n_poly,
    )


def to_normal_modes(x: torch.Tensor, cmat: torch.Tensor) -> torch.Tensor:  # [P, N, 3] → [P, N, 3]
    """q̃_k = Σ_j C[j, k] q_j."""
    if cmat.shape[0] == 1:
        return x * cmat[0, 0]
    return torch.einsum("jk,jnd->knd", cmat, x)


def from_normal_modes(y: torch.Tensor, cmat: torch.Tensor) -> torch.Tensor:  # [P, N, 3]
    """q_j = Σ_k C[j, k] q̃_k."""
    if cmat.shape[0] == 1:
        return y * cmat[0, 0]
    return torch.einsum("jk,knd->jnd", cmat, y)


def polymer_view(state: MDState, n_beads: int) -> MDState:
    """The batch seen per ring polymer (for the failure detectors and summaries).

    Replica r of the view is polymer r, holding the atoms of all its beads; momenta are
    divided by √P, so its temperature is the physical one (beads move at T_P = P·T);
    ``replica_ids`` are polymer ids; the energy is the bead average.
    """
    p = int(n_beads)
    energy = None if state.energy is None else state.energy.view(-1, p).mean(1)
    return replace(
        state,
        momenta=state.momenta / float(np.sqrt(p)),
        cell=state.cell[::p],
        pbc=state.pbc[::p],
        batch=torch.div(state.batch, p, rounding_mode="floor"),
        replica_ids=torch.div(state.replica_ids[::p], p, rounding_mode="floor"),
        seeds=state.seeds[::p],
        energy=energy,
        thermostat={},
    )
