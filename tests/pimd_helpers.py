"""Analytic systems for the PIMD tests: independent 3-D harmonic oscillators."""

from __future__ import annotations

import numpy as np
import torch
from ase import Atoms

from legato.md.state import MDState, per_replica_sum, state_from_atoms
from legato.pimd.normal_modes import HBAR_EV_T
from legato.units import KB_EV_PER_K


def oscillator_atoms(n: int = 16, mass: float = 1.008, spacing: float = 10.0) -> Atoms:
    """``n`` H atoms on a line, far apart (each sits in its own harmonic well)."""
    atoms = Atoms(f"H{n}", positions=[[spacing * i, 0.0, 0.0] for i in range(n)])
    atoms.set_masses([mass] * n)
    return atoms


def bead_state(atoms: Atoms, n_beads: int, n_polymers: int, seeds: list[int] | None = None) -> MDState:
    """``n_polymers`` ring polymers of ``n_beads`` beads, all beads at the structure."""
    seeds = seeds or list(range(n_polymers))
    return state_from_atoms(
        [atoms] * (n_beads * n_polymers),
        ["H", "N"],
        seeds=[seeds[r // n_beads] for r in range(n_beads * n_polymers)],
        replica_ids=list(range(n_beads * n_polymers)),
    )


class HarmonicWells:
    """V = Σ_i ½ k |x_i − x_i⁰|² with ω = √(k/m): ``force_fn(state) -> (energy [R], forces)``."""

    def __init__(self, anchors: torch.Tensor, k_eV_A2: float):
        self.anchors = anchors  # [n_atoms, 3]
        self.k = float(k_eV_A2)

    def __call__(self, state: MDState) -> tuple[torch.Tensor, torch.Tensor]:
        d = state.positions - self.anchors
        e_atom = 0.5 * self.k * (d * d).sum(1)
        return per_replica_sum(e_atom, state.batch, state.n_replicas), -self.k * d


def oscillator_constants(hbar_omega_eV: float, beta_hbar_omega: float, mass: float) -> tuple[float, float]:
    """(k in eV/Å², T in K) of an oscillator with ħω and βħω."""
    omega = hbar_omega_eV / HBAR_EV_T  # 1/t_ASE
    return mass * omega * omega, hbar_omega_eV / beta_hbar_omega / KB_EV_PER_K


def discretised_kinetic(hbar_omega_eV: float, temperature_K: float, n_beads: int) -> float:
    """Exact kinetic energy per degree of freedom of the P-bead harmonic path integral (eV):
    kT/2 · [1 + Σ_{k=1}^{P−1} ω² / (ω² + ω_k²)], ω_k = 2 (P kT/ħ) sin(kπ/P)."""
    kt = KB_EV_PER_K * temperature_K
    k = np.arange(1, n_beads)
    wk = 2.0 * n_beads * kt * np.sin(k * np.pi / n_beads)  # ħω_k in eV
    return 0.5 * kt * (1.0 + float(np.sum(hbar_omega_eV**2 / (hbar_omega_eV**2 + wk**2))))


def quantum_kinetic(hbar_omega_eV: float, temperature_K: float) -> float:
    """(ħω/4)·coth(βħω/2) per degree of freedom (eV)."""
    x = hbar_omega_eV / (KB_EV_PER_K * temperature_K)
    return 0.25 * hbar_omega_eV / np.tanh(0.5 * x)
