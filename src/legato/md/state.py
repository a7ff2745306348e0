"""The batched MD state: R independent replicas, possibly of different sizes, in one set of
flat tensors (float64), with a system index ``batch`` like a batched graph.

Units (see :mod:`legato.units`): positions Å, masses amu, momenta amu·Å per ASE time unit,
energies eV, cell rows are lattice vectors (Å).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace

import numpy as np
import torch
from ase import Atoms

from legato.data.graph import species_index
from legato.errors import LegatoError
from legato.units import KB_EV_PER_K

DTYPE = torch.float64


@dataclass(frozen=True)
class MDState:
    """R replicas in one batch. Integrators return new states; they never mutate one."""

    positions: torch.Tensor  # [n_atoms, 3] Å
    momenta: torch.Tensor  # [n_atoms, 3] amu·Å/t_ASE
    masses: torch.Tensor  # [n_atoms] amu
    species: torch.Tensor  # [n_atoms] long, index into type_names
    cell: torch.Tensor  # [R, 3, 3] Å
    pbc: torch.Tensor  # [R, 3] bool
    batch: torch.Tensor  # [n_atoms] long, position of the replica in this batch (0..R-1)
    replica_ids: torch.Tensor  # [R] long, the replica's index in the whole run (stable)
    seeds: torch.Tensor  # [R] long, per-replica seed of the random streams
    forces: torch.Tensor | None = None  # [n_atoms, 3] eV/Å at ``positions``
    energy: torch.Tensor | None = None  # [R] eV potential energy at ``positions``
    step: int = 0  # MD steps done (the same for every replica in the batch)
    #: integrator variables, each with leading dimension R (e.g. Nosé–Hoover chain)
    thermostat: dict[str, torch.Tensor] = field(default_factory=dict)

    # ---------------------------------------------------------------- derived quantities
    @property
    def n_replicas(self) -> int:
        return int(self.cell.shape[0])

    @property
    def n_atoms(self) -> int:
        return int(self.positions.shape[0])

    def atoms_per_replica(self) -> torch.Tensor:  # [R] long
        return torch.bincount(self.batch, minlength=self.n_replicas)

    def velocities(self) -> torch.Tensor:  # [n_atoms, 3] Å/t_ASE
        return self.momenta / self.masses[:, None]

    def kinetic_energy(self) -> torch.Tensor:  # [R] eV
        return per_replica_sum(kinetic_per_atom(self.momenta, self.masses), self.batch, self.n_replicas)

    def degrees_of_freedom(self) -> torch.Tensor:  # [R] float
        return degrees_of_freedom(self.atoms_per_replica())

    def temperature_K(self) -> torch.Tensor:  # [R] K
        return 2.0 * self.kinetic_energy() / (self.degrees_of_freedom() * KB_EV_PER_K)

    # ---------------------------------------------------------------- batch management
    def select(self, keep: torch.Tensor) -> MDState:
        """The sub-batch of replicas where ``keep`` [R] (bool) is True; order preserved."""
        keep = torch.as_tensor(keep, dtype=torch.bool)
        if keep.shape != (self.n_replicas,):
            raise ValueError(f"keep must have shape ({self.n_replicas},)")
        atom_keep = keep[self.batch]  # [n_atoms]
        new_index = torch.cumsum(keep.long(), 0) - 1  # [R] position in the new batch
        return replace(
            self,
            positions=self.positions[atom_keep],
            momenta=self.momenta[atom_keep],
            masses=self.masses[atom_keep],
            species=self.species[atom_keep],
            cell=self.cell[keep],
            pbc=self.pbc[keep],
            batch=new_index[self.batch[atom_keep]],
            replica_ids=self.replica_ids[keep],
            seeds=self.seeds[keep],
            forces=None if self.forces is None else self.forces[atom_keep],
            energy=None if self.energy is None else self.energy[keep],
            thermostat={k: v[keep] for k, v in self.thermostat.items()},
        )

    def atom_slice(self, r: int) -> slice:
        """Atoms of batch position ``r`` (replicas are stored contiguously)."""
        counts = self.atoms_per_replica()
        start = int(counts[:r].sum())
        return slice(start, start + int(counts[r]))

    def to_atoms(self, r: int, type_names: Sequence[str]) -> Atoms:
        """Replica at batch position ``r`` as ASE Atoms (momenta set; no calculator)."""
        sl = self.atom_slice(r)
        symbols = [type_names[int(s)] for s in self.species[sl]]
        atoms = Atoms(
            symbols=symbols,
            positions=self.positions[sl].numpy(),
            masses=self.masses[sl].numpy(),
            cell=self.cell[r].numpy(),
            pbc=self.pbc[r].numpy(),
        )
        atoms.set_momenta(self.momenta[sl].numpy())
        return atoms

    def state_dict(self) -> dict:
        """Plain dict of tensors (for checkpoints)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["thermostat"] = dict(self.thermostat)
        return out

    @classmethod
    def from_state_dict(cls, d: dict) -> MDState:
        return cls(**d)


def kinetic_per_atom(momenta: torch.Tensor, masses: torch.Tensor) -> torch.Tensor:  # [n_atoms]
    return 0.5 * (momenta * momenta).sum(1) / masses


def per_replica_sum(x: torch.Tensor, batch: torch.Tensor, n_replicas: int) -> torch.Tensor:
    """Sum a per-atom quantity [n_atoms, ...] over each replica → [R, ...]."""
    out = torch.zeros((n_replicas, *x.shape[1:]), dtype=x.dtype)
    return out.index_add_(0, batch, x)


def degrees_of_freedom(n_atoms: torch.Tensor) -> torch.Tensor:  # [R] float
    """3N − 3 (total momentum is zero and conserved), and 3 for a lone atom."""
    n = n_atoms.to(DTYPE)
    return torch.where(n > 1, 3.0 * n - 3.0, 3.0 * n)


def state_from_atoms(
    atoms_list: Sequence[Atoms],
    type_names: Sequence[str],
    seeds: Sequence[int] | None = None,
    replica_ids: Sequence[int] | None = None,
) -> MDState:
    """Batch R ASE structures (positions, masses, cell, pbc, and momenta if set)."""
    if not atoms_list:
        raise LegatoError("no structures given for MD")
    pos, mom, mass, spec, batch, cells, pbcs = [], [], [], [], [], [], []
    for r, atoms in enumerate(atoms_list):
        if len(atoms) == 0:
            raise LegatoError(f"structure {r} has no atoms")
        p = np.asarray(atoms.positions, dtype=np.float64)
        if not np.all(np.isfinite(p)):
            raise LegatoError(f"structure {r} has non-finite positions")
        m = np.asarray(atoms.get_masses(), dtype=np.float64)
        if np.any(m <= 0):
            raise LegatoError(f"structure {r} has non-positive masses")
        pos.append(p)
        mom.append(np.asarray(atoms.get_momenta(), dtype=np.float64))
        mass.append(m)
        spec.append(species_index(atoms.get_chemical_symbols(), type_names))
        batch.append(np.full(len(atoms), r, dtype=np.int64))
        cell = np.asarray(atoms.cell.array, dtype=np.float64)
        pbc = np.asarray(atoms.pbc, dtype=bool)
        if pbc.any() and abs(np.linalg.det(cell)) < 1e-8:
            raise LegatoError(f"structure {r} is periodic but its cell has zero volume")
        cells.append(cell)
        pbcs.append(pbc)
    n_rep = len(atoms_list)
    seeds = list(range(n_rep)) if seeds is None else list(seeds)
    replica_ids = list(range(n_rep)) if replica_ids is None else list(replica_ids)
    if len(seeds) != n_rep or len(replica_ids) != n_rep:
        raise LegatoError("need one seed and one replica id per structure")
    return MDState(
        positions=torch.from_numpy(np.concatenate(pos)),
        momenta=torch.from_numpy(np.concatenate(mom)),
        masses=torch.from_numpy(np.concatenate(mass)),
        species=torch.from_numpy(np.concatenate(spec)),
        cell=torch.from_numpy(np.stack(cells)),
        pbc=torch.from_numpy(np.stack(pbcs)),
        batch=torch.from_numpy(np.concatenate(batch)),
        replica_ids=torch.tensor(replica_ids, dtype=torch.long),
        seeds=torch.tensor(seeds, dtype=torch.long),
    )


def concat_states(states: Sequence[MDState]) -> MDState:
    """Join batches (same step, same thermostat keys) into one."""
    if len(states) == 1:
        return states[0]
    offsets = np.cumsum([0] + [s.n_replicas for s in states[:-1]])

    def cat(name: str) -> torch.Tensor | None:
        vals = [getattr(s, name) for s in states]
        return None if any(v is None for v in vals) else torch.cat(vals)

    keys = set(states[0].thermostat)
    if any(set(s.thermostat) != keys for s in states) or len({s.step for s in states}) != 1:
        raise ValueError("states differ in step or thermostat variables")
    return MDState(
        positions=cat("positions"),
        momenta=cat("momenta"),
        masses=cat("masses"),
        species=cat("species"),
        cell=cat("cell"),
        pbc=cat("pbc"),
        batch=torch.cat([s.batch + int(o) for s, o in zip(states, offsets, strict=True)]),
        replica_ids=cat("replica_ids"),
        seeds=cat("seeds"),
        forces=cat("forces"),
        energy=cat("energy"),
        step=states[0].step,
        thermostat={k: torch.cat([s.thermostat[k] for s in states]) for k in keys},
    )
