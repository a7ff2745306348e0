"""Shared small systems and fault-injecting potentials for the MD tests."""

from __future__ import annotations

import numpy as np
import torch
from ase import Atoms
from ase.lattice.cubic import FaceCenteredCubic

from legato.data import keys as K
from legato.md.potentials import LennardJones


def argon_box(size: int = 3, a: float = 5.6, rattle: float = 0.0, seed: int = 0) -> Atoms:
    """fcc argon (4·size³ atoms), periodic; a = 5.6 Å is a dense liquid-like density."""
    atoms = FaceCenteredCubic("Ar", size=(size, size, size), latticeconstant=a)
    if rattle:
        atoms.rattle(rattle, seed=seed)
    return atoms


def argon_cluster(n_side: int = 3, spacing: float = 3.8, seed: int = 0) -> Atoms:
    """A non-periodic simple-cubic argon cluster, slightly rattled."""
    g = np.arange(n_side) * spacing
    pos = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
    atoms = Atoms(f"Ar{len(pos)}", positions=pos)
    atoms.rattle(0.05, seed=seed)
    return atoms


def argon_triclinic(seed: int = 0) -> Atoms:
    """A small triclinic periodic argon cell (smaller than 2·r_max in every direction)."""
    cell = np.array([[7.6, 0.0, 0.0], [2.1, 7.2, 0.0], [1.3, 1.7, 7.0]])
    frac = np.array([[x, y, z] for x in (0, 0.5) for y in (0, 0.5) for z in (0, 0.5)])
    atoms = Atoms("Ar8", scaled_positions=frac, cell=cell, pbc=True)
    atoms.rattle(0.05, seed=seed)
    return atoms


def lj(r_max: float = 8.0) -> LennardJones:
    return LennardJones(epsilon_eV=0.0104, sigma_A=3.40, r_max=r_max)


class FaultInjector(torch.nn.Module):
    """Wraps a potential; from call ``at_call`` on, corrupts the frame with ``n_atoms`` atoms.

    kind: "nan" (NaN forces), "huge" (atom 0 gets a −1e3 eV/Å force along x), "kick" (random
    forces of ``magnitude`` eV/Å on every atom, for ``duration`` calls), "pull" (atoms 0 and 1
    of the frame attract with ``magnitude`` eV/Å), "energy_jump" (+1 eV on the energy),
    "raise" (RuntimeError when that frame is in the batch), "interrupt" (KeyboardInterrupt:
    the whole run stops, as a crash or a kill would).
    """

    def __init__(
        self,
        inner,
        n_atoms: int,
        kind: str,
        at_call: int,
        magnitude: float = 1.0,
        duration: int = 10**9,
    ):
        super().__init__()
        self.inner, self.n_atoms, self.kind = inner, n_atoms, kind
        self.at_call, self.magnitude, self.duration = at_call, magnitude, duration
        self.r_max = inner.r_max
        self.calls = 0

    def forward(self, graph):
        self.calls += 1
        active = self.at_call <= self.calls < self.at_call + self.duration
        counts = graph[K.NUM_ATOMS].tolist()
        if self.kind == "raise" and active and self.n_atoms in counts:
            raise RuntimeError("injected failure")
        if self.kind == "interrupt" and active:
            raise KeyboardInterrupt  # a crash of the whole process (not a replica's fault)
        out = dict(self.inner(graph))
        if not active or self.n_atoms not in counts:
            return out
        f = counts.index(self.n_atoms)
        start = sum(counts[:f])
        sl = slice(start, start + self.n_atoms)
        forces = out[K.FORCES].clone()
        energy = out[K.TOTAL_ENERGY].clone()
        if self.kind == "nan":
            forces[sl] = float("nan")
        elif self.kind == "huge":
            forces[start, 0] = -1.0e3  # atom 0 sits at the cluster corner: pushed outwards
        elif self.kind == "kick":
            g = torch.Generator().manual_seed(self.calls)
            forces[sl] += self.magnitude * torch.randn(self.n_atoms, 3, generator=g, dtype=forces.dtype)
        elif self.kind == "pull":
            pos = graph[K.POSITIONS]
            d = pos[start + 1] - pos[start]
            u = d / d.norm()
            forces[start] += self.magnitude * u
            forces[start + 1] -= self.magnitude * u
        elif self.kind == "energy_jump":
            energy[f] += 1.0
        out[K.FORCES], out[K.TOTAL_ENERGY] = forces, energy
        return out
