"""Verlet lists with a skin equal brute-force pair enumeration, and rebuild only when needed."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from ase import Atoms

from legato.md.neighbors import VerletList, brute_force_pairs
from legato.md.state import state_from_atoms


def _systems() -> list[Atoms]:
    rng = np.random.default_rng(3)
    tri = np.array([[3.9, 0.0, 0.0], [1.6, 3.5, 0.0], [-1.1, 0.9, 3.3]])  # smaller than r_max
    small = Atoms("Ar5", scaled_positions=rng.random((5, 3)), cell=tri, pbc=True)
    slab = Atoms(
        "Ar9",
        scaled_positions=rng.random((9, 3)),
        cell=np.diag([5.0, 6.0, 9.0]),
        pbc=[True, True, False],
    )
    cluster = Atoms("Ar12", positions=rng.random((12, 3)) * 7.0)
    outside = small.copy()
    outside.positions += 2.3 * tri[0] - 1.7 * tri[2]  # unwrapped coordinates
    return [small, slab, cluster, outside]


def _edge_set(edges, state, r) -> set[tuple[int, int, int, int, int]]:
    sel = edges.edge_batch == r
    start = state.atom_slice(r).start
    ei = edges.edge_index[:, sel] - start
    sh = edges.shifts[sel].long()
    return {(int(i), int(j), *map(int, s)) for i, j, s in zip(ei[0], ei[1], sh, strict=True)}


def _check_all(vl, state, r_max):
    edges = vl.edges(state)
    for r in range(state.n_replicas):
        sl = state.atom_slice(r)
        ref = brute_force_pairs(
            state.positions[sl].numpy(), state.cell[r].numpy(), state.pbc[r].numpy(), r_max
        )
        assert _edge_set(edges, state, r) == ref
        assert len(ref) > 0
    # lengths match the vectors the model will recompute
    i, j = edges.edge_index
    vec = (
        state.positions[j]
        - state.positions[i]
        + torch.einsum("ek,ekl->el", edges.shifts, state.cell[edges.edge_batch])
    )
    assert torch.allclose(vec.norm(dim=1), edges.lengths, atol=1e-12)


def test_verlet_list_equals_brute_force_while_atoms_move():
    r_max, skin = 5.0, 1.0
    state = state_from_atoms(_systems(), ["Ar"])
    vl = VerletList(r_max, skin)
    _check_all(vl, state, r_max)
    builds = vl.n_builds
    assert builds == state.n_replicas
    rng = np.random.default_rng(0)
    for _ in range(6):  # small moves (< skin/2 in total): no rebuild, still exact
        step = torch.from_numpy(rng.normal(size=state.positions.shape)) * 0.02
        state = replace(state, positions=state.positions + step)
        _check_all(vl, state, r_max)
    assert vl.n_builds == builds
    # move one atom of replica 2 by more than skin/2: only that replica is rebuilt
    pos = state.positions.clone()
    pos[state.atom_slice(2).start] += torch.tensor([0.6, 0.0, 0.0], dtype=torch.float64)
    state = replace(state, positions=pos)
    _check_all(vl, state, r_max)
    assert vl.n_builds == builds + 1


def test_verlet_list_after_replicas_leave():
    r_max = 4.5
    state = state_from_atoms(_systems(), ["Ar"], replica_ids=[10, 11, 12, 13])
    vl = VerletList(r_max, 0.8)
    _check_all(vl, state, r_max)
    n = vl.n_builds
    sub = state.select(torch.tensor([True, False, True, False]))
    _check_all(vl, sub, r_max)
    assert vl.n_builds == n  # the survivors keep their lists


def test_edges_are_canonical_whenever_the_list_was_built():
    """Same edges in the same order after different rebuild histories (exact restarts)."""
    state = state_from_atoms(_systems(), ["Ar"])
    a = VerletList(5.0, 1.0)
    a.edges(state)
    rng = np.random.default_rng(1)
    step = torch.from_numpy(rng.uniform(-0.25, 0.25, size=state.positions.shape))
    moved = replace(state, positions=state.positions + step)
    ea = a.edges(moved)  # list built at the old positions
    eb = VerletList(5.0, 1.0).edges(moved)  # list built at the new positions
    assert a.n_builds == state.n_replicas  # no rebuild happened
    assert torch.equal(ea.edge_index, eb.edge_index) and torch.equal(ea.shifts, eb.shifts)
    assert torch.equal(ea.lengths, eb.lengths)


def test_broken_replica_does_not_break_the_list():
    state = state_from_atoms(_systems()[:2], ["Ar"])
    vl = VerletList(4.0, 1.0)
    vl.edges(state)
    pos = state.positions.clone()
    pos[0, 0] = float("nan")
    edges = vl.edges(replace(state, positions=pos))
    assert 0 in vl.broken and 1 not in vl.broken
    assert bool((edges.edge_batch == 1).any())
