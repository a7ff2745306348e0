"""Shared small systems and fault-injecting potentials for the MD tests."""

from __future__ import annotations

import numpy as np
import torch
from ase import Atoms
from ase.lattice.cubic import FaceCenteredCubic

from legato.data import keys as K
from legato.errors import LegatoError
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
    of the frame attract with ``magnitude`` eV/Å), "energy_jump" (+``magnitude`` eV on the energy),
    "raise" (a LegatoError, as a blown-up state causes, when that frame is in the batch),
    "bug" (a TypeError, as a programming error does, when that frame is in the batch),
    "overflow" (forces of 1e308 eV/Å: the kinetic energy overflows, the atoms fly off),
    "interrupt" (KeyboardInterrupt: the whole run stops, as a crash or a kill would).
    The fault settings are private attributes: they are not part of the model's fingerprint,
    so a run crashed by an injector resumes with the same injector at another ``at_call``.
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
        self.inner, self._n_atoms, self._kind = inner, n_atoms, kind
        self._at_call, self._magnitude, self._duration = at_call, magnitude, duration
        self.r_max = inner.r_max
        self._calls = 0
        self._seen_unusable = False

    @property
    def calls(self) -> int:
        return self._calls

    @property
    def seen_unusable(self) -> bool:
        """Whether non-finite or absurd (> 1e6 Å) positions ever reached this potential."""
        return self._seen_unusable

    def forward(self, graph):
        self._calls += 1
        pos = graph[K.POSITIONS]
        self._seen_unusable |= not bool(torch.isfinite(pos).all()) or float(pos.abs().max()) > 1.0e6
        active = self._at_call <= self._calls < self._at_call + self._duration
        counts = graph[K.NUM_ATOMS].tolist()
        if self._kind == "raise" and active and self._n_atoms in counts:
            raise LegatoError("injected failure: too many neighbours")
        if self._kind == "bug" and active and self._n_atoms in counts:
            raise TypeError("injected bug")
        if self._kind == "interrupt" and active:
            raise KeyboardInterrupt  # a crash of the whole process (not a replica's fault)
        out = dict(self.inner(graph))
        if not active or self._n_atoms not in counts:
            return out
        n, kind, magnitude = self._n_atoms, self._kind, self._magnitude
        f = counts.index(n)
        start = sum(counts[:f])
        sl = slice(start, start + n)
        forces = out[K.FORCES].clone()
        energy = out[K.TOTAL_ENERGY].clone()
        if kind == "nan":
            forces[sl] = float("nan")
        elif kind == "overflow":
            forces[sl] = 1.0e308  # finite, but the kinetic energy overflows
        elif kind == "huge":
            forces[start, 0] = -1.0e3  # atom 0 sits at the cluster corner: pushed outwards
        elif kind == "kick":
            g = torch.Generator().manual_seed(self._calls)
            forces[sl] += magnitude * torch.randn(n, 3, generator=g, dtype=forces.dtype)
        elif kind == "pull":
            pos = graph[K.POSITIONS]
            d = pos[start + 1] - pos[start]
            u = d / d.norm()
            forces[start] += magnitude * u
            forces[start + 1] -= magnitude * u
        elif kind == "energy_jump":
            energy[f] += magnitude
        out[K.FORCES], out[K.TOTAL_ENERGY] = forces, energy
        return out
