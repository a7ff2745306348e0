"""The boundary between the float64 MD state and a potential (the model or a reference).

A potential is any ``torch.nn.Module`` called as ``pot(graph) -> {"energy": [n_frames],
"forces": [n_atoms, 3], ...}`` on a graph dict with the keys of :mod:`legato.data.keys`.
All replicas go into one batched graph, so one call serves the whole batch.
"""

from __future__ import annotations

import torch

from legato.data import keys as K
from legato.md.neighbors import Edges, VerletList
from legato.md.state import DTYPE, MDState


def potential_dtype(potential: torch.nn.Module) -> torch.dtype:
    """The dtype of the potential's floating parameters (float64 if it has none)."""
    for p in potential.parameters():
        if p.is_floating_point():
            return p.dtype
    for b in potential.buffers():
        if b.is_floating_point():
            return b.dtype
    return DTYPE


def potential_r_max(potential: torch.nn.Module) -> float:
    """Cutoff radius of a potential: ``r_max`` attribute or ``hparams['r_max']``."""
    r = getattr(potential, "r_max", None)
    if r is None:
        r = getattr(potential, "hparams", {}).get("r_max")
    if r is None:
        raise ValueError("potential has no r_max (attribute or hparams['r_max'])")
    return float(r)


class ForceField:
    """Energies and forces of a batch of replicas from one potential call.

    Builds the graph from the Verlet list (edges beyond r_max filtered out), casts it to the
    potential's dtype, and casts the results back to float64. If the potential raises, the
    replicas are evaluated one by one and those that still fail get NaN results (recorded in
    :attr:`errors`), so a bad replica cannot take the batch down.
    """

    def __init__(
        self,
        potential: torch.nn.Module,
        r_max: float | None = None,
        skin_A: float = 1.0,
        dtype: torch.dtype | None = None,
        device: str | torch.device = "cpu",
    ):
        self.potential = potential
        self.device = torch.device(device)
        self.r_max = potential_r_max(potential) if r_max is None else float(r_max)
        self.dtype = potential_dtype(potential) if dtype is None else dtype
        self.neighbors = VerletList(self.r_max, skin_A)
        self.last_edges: Edges | None = None
        self.errors: dict[int, str] = {}  # replica id → message of an exception it caused
        self.n_calls = 0

    def graph(self, state: MDState, edges: Edges) -> dict[str, torch.Tensor]:
        dt, dev = self.dtype, self.device
        return {
            K.POSITIONS: state.positions.to(dev, dt),
            K.SPECIES: state.species.to(dev),
            K.BATCH: state.batch.to(dev),
            K.NUM_ATOMS: state.atoms_per_replica().to(dev),
            K.CELL: state.cell.to(dev, dt),
            K.PBC: state.pbc.to(dev),
            K.EDGE_INDEX: edges.edge_index.to(dev),
            K.EDGE_SHIFT: edges.shifts.to(dev, dt),
        }

    def __call__(self, state: MDState) -> tuple[torch.Tensor, torch.Tensor]:
        """Potential energy [R] (eV) and forces [n_atoms, 3] (eV/Å), float64."""
        edges = self.neighbors.edges(state)
        self.last_edges = edges
        self.n_calls += 1
        try:
            out = self.potential(self.graph(state, edges))
            energy = out[K.TOTAL_ENERGY].detach().to("cpu", DTYPE).reshape(state.n_replicas)
            forces = out[K.FORCES].detach().to("cpu", DTYPE)
        except Exception:  # noqa: BLE001 — isolate the replica that makes the model fail
            energy, forces = self._one_by_one(state)
        return energy, forces

    def _one_by_one(self, state: MDState) -> tuple[torch.Tensor, torch.Tensor]:
        energies, forces = [], []
        for r in range(state.n_replicas):
            keep = torch.zeros(state.n_replicas, dtype=torch.bool)
            keep[r] = True
            sub = state.select(keep)
            n = sub.n_atoms
            try:
                e_sub = _edges_of(self.last_edges, state, r)
                out = self.potential(self.graph(sub, e_sub))
                energies.append(out[K.TOTAL_ENERGY].detach().to("cpu", DTYPE).reshape(1))
                forces.append(out[K.FORCES].detach().to("cpu", DTYPE).reshape(n, 3))
            except Exception as exc:  # noqa: BLE001
                rid = int(state.replica_ids[r])
                self.errors[rid] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                energies.append(torch.full((1,), float("nan"), dtype=DTYPE))
                forces.append(torch.full((n, 3), float("nan"), dtype=DTYPE))
        return torch.cat(energies), torch.cat(forces)

    def min_distance(self, n_replicas: int) -> torch.Tensor:
        """Closest pair distance per replica [R] (Å) at the last call; inf if no pair < r_max."""
        out = torch.full((n_replicas,), float("inf"), dtype=DTYPE)
        e = self.last_edges
        if e is None or e.lengths.numel() == 0:
            return out
        return out.scatter_reduce_(0, e.edge_batch, e.lengths, reduce="amin", include_self=True)


def _edges_of(edges: Edges, state: MDState, r: int) -> Edges:
    """The edges of batch position ``r``, renumbered for that replica alone."""
    sel = edges.edge_batch == r
    start = state.atom_slice(r).start
    return Edges(
        edge_index=edges.edge_index[:, sel] - start,
        shifts=edges.shifts[sel],
        lengths=edges.lengths[sel],
        edge_batch=torch.zeros(int(sel.sum()), dtype=torch.long),
    )
