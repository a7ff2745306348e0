"""Verlet neighbour lists with a skin, kept per replica, built with vesin.

Each replica's list holds every directed pair (i, j, S) with |r_j − r_i + S·cell| < r_max +
skin at build time. It is rebuilt only when some atom of that replica moved more than skin/2
since the build, which guarantees that no pair can have come within r_max unseen. Shifts S
stay attached to their pair and positions are never wrapped, so a list stays valid for any
cell, including triclinic cells smaller than 2·(r_max + skin).

Every edge list is sorted by (i, j, S): after filtering to r_max, the edges passed to the
model are the same, in the same order, whenever the list was built. Results are therefore
independent of the rebuild history (batched = one by one; exact restart).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from legato.data.neighbors import neighbor_list
from legato.md.state import MDState

#: coordinates beyond this (Å) mean the replica has blown up; its list is not rebuilt
MAX_COORDINATE_A = 1.0e6


@dataclass
class _ReplicaList:
    edge_index: np.ndarray  # [2, E] local atom indices
    shifts: np.ndarray  # [E, 3] int64
    reference: torch.Tensor  # [n, 3] positions at build time
    cell: torch.Tensor  # [3, 3] cell at build time


@dataclass
class Edges:
    """Edges of the whole batch within r_max (global atom indices)."""

    edge_index: torch.Tensor  # [2, E] long
    shifts: torch.Tensor  # [E, 3] float64, integer-valued
    lengths: torch.Tensor  # [E] Å
    edge_batch: torch.Tensor  # [E] long, batch position of each edge's replica


class VerletList:
    """Per-replica Verlet lists with a skin for a batch of replicas (see module doc)."""

    def __init__(self, r_max: float, skin_A: float = 1.0):
        if r_max <= 0 or skin_A < 0:
            raise ValueError("r_max must be > 0 and skin_A >= 0")
        self.r_max = float(r_max)
        self.skin = float(skin_A)
        self._lists: dict[int, _ReplicaList] = {}
        self._key: tuple[int, ...] | None = None
        self._cat: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self._reference: torch.Tensor | None = None  # [n_atoms, 3] aligned with the batch
        self.n_builds = 0  # replica list builds so far (for tests / statistics)
        self.broken: set[int] = set()  # replica ids whose positions were non-finite or huge

    # ------------------------------------------------------------------ building
    def _build(self, state: MDState, r: int, rid: int) -> None:
        sl = state.atom_slice(r)
        pos = state.positions[sl]
        if not bool(torch.isfinite(pos).all()) or float(pos.abs().max()) > MAX_COORDINATE_A:
            self.broken.add(rid)
            if rid not in self._lists:  # never built: an empty list keeps the batch usable
                self._lists[rid] = _ReplicaList(
                    np.zeros((2, 0), np.int64),
                    np.zeros((0, 3), np.int64),
                    pos.clone(),
                    state.cell[r].clone(),
                )
            return
        ei, sh = neighbor_list(
            pos.numpy(), state.cell[r].numpy(), state.pbc[r].numpy(), self.r_max + self.skin
        )
        order = np.lexsort((sh[:, 2], sh[:, 1], sh[:, 0], ei[1], ei[0]))
        self._lists[rid] = _ReplicaList(
            np.ascontiguousarray(ei[:, order]),
            np.ascontiguousarray(sh[order]),
            pos.clone(),
            state.cell[r].clone(),
        )
        self.n_builds += 1

    def _concatenate(self, state: MDState) -> None:
        ids = state.replica_ids.tolist()
        counts = state.atoms_per_replica().tolist()
        offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        eis, shs, refs, ebs = [], [], [], []
        for r, (rid, off) in enumerate(zip(ids, offsets, strict=True)):
            lst = self._lists[rid]
            eis.append(torch.from_numpy(lst.edge_index + off))
            shs.append(torch.from_numpy(lst.shifts))
            refs.append(lst.reference)
            ebs.append(torch.full((lst.edge_index.shape[1],), r, dtype=torch.long))
        edge_index = torch.cat(eis, 1)
        shifts = torch.cat(shs).to(torch.float64)
        edge_batch = torch.cat(ebs)
        # Cartesian image offset S·cell per edge (fixed while the cell is fixed), stored
        # transposed [3, E]: reductions over a leading axis of 3 are much faster in torch
        shift_vec_t = torch.einsum("ek,ekl->le", shifts, state.cell[edge_batch]).contiguous()
        self._cat = (edge_index, shifts, shift_vec_t, edge_batch)
        self._reference = torch.cat(refs)

    def update(self, state: MDState) -> int:
        """Rebuild the lists of replicas that need it; returns how many were rebuilt."""
        ids = tuple(state.replica_ids.tolist())
        for rid in list(self._lists):
            if rid not in ids:
                del self._lists[rid]
        n_built = 0
        if ids != self._key:  # new batch composition: lists of new replicas, realign the rest
            counts = state.atoms_per_replica().tolist()
            for r, rid in enumerate(ids):
                lst = self._lists.get(rid)
                if (
                    lst is None
                    or lst.reference.shape[0] != counts[r]
                    or not torch.equal(lst.cell, state.cell[r])
                ):
                    self._build(state, r, rid)
                    n_built += 1
            self._key = ids
            self._concatenate(state)
        moved = torch.nonzero(self._moved_too_far(state)).flatten().tolist()
        for r in moved:
            self._build(state, r, ids[r])
        if moved:
            self._concatenate(state)
        return n_built + len(moved)

    def _moved_too_far(self, state: MDState) -> torch.Tensor:  # [R] bool
        disp2 = (state.positions - self._reference).pow(2).sum(1)  # [n_atoms]
        # NaN displacements count as "moved" so a broken replica is noticed
        disp2 = torch.nan_to_num(disp2, nan=float("inf"))
        max2 = torch.zeros(state.n_replicas, dtype=disp2.dtype).scatter_reduce_(
            0, state.batch, disp2, reduce="amax", include_self=True
        )
        return max2 > (0.5 * self.skin) ** 2

    # ------------------------------------------------------------------ edges
    def edges(self, state: MDState) -> Edges:
        """Update if needed, then the edges within r_max at the current positions."""
        self.update(state)
        assert self._cat is not None
        edge_index, shifts, shift_vec_t, edge_batch = self._cat
        pos_t = state.positions.t().contiguous()  # [3, n_atoms]
        vec_t = pos_t.index_select(1, edge_index[1]) - pos_t.index_select(1, edge_index[0])
        vec_t += shift_vec_t  # [3, E]
        d2 = (vec_t * vec_t).sum(0)  # [E]
        keep = torch.nonzero(d2 < self.r_max**2).squeeze(1)
        return Edges(
            edge_index=edge_index.index_select(1, keep),
            shifts=shifts.index_select(0, keep),
            lengths=d2.index_select(0, keep).sqrt(),
            edge_batch=edge_batch.index_select(0, keep),
        )


def brute_force_pairs(
    positions: np.ndarray,  # [n, 3]
    cell: np.ndarray,  # [3, 3]
    pbc: np.ndarray,  # [3] bool
    r_max: float,
) -> set[tuple[int, int, int, int, int]]:
    """All (i, j, S) with |r_j − r_i + S·cell| < r_max by explicit image enumeration.

    For tests: O(n² · images); the image range is derived from the cell's face distances.
    """
    pbc = np.asarray(pbc, dtype=bool)
    reps = np.zeros(3, dtype=int)
    if pbc.any():
        inv = np.linalg.inv(cell)
        heights = 1.0 / np.linalg.norm(inv, axis=0)  # distance between opposite faces
        extent = np.ptp(positions @ inv, axis=0)  # unwrapped positions can leave the cell
        reps = np.where(pbc, np.ceil(r_max / heights + extent).astype(int) + 1, 0)
    out = set()
    ranges = [range(-k, k + 1) for k in reps]
    for s0 in ranges[0]:
        for s1 in ranges[1]:
            for s2 in ranges[2]:
                s = np.array([s0, s1, s2])
                vec = positions[None, :, :] - positions[:, None, :] + s @ cell  # [n, n, 3]
                d = np.linalg.norm(vec, axis=2)
                ii, jj = np.nonzero(d < r_max)
                for i, j in zip(ii, jj, strict=True):
                    if i == j and s0 == s1 == s2 == 0:
                        continue
                    out.add((int(i), int(j), s0, s1, s2))
    return out
