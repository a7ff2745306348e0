"""The boundary between the float64 MD state and a potential (the model or a reference).

A potential is any ``torch.nn.Module`` called as ``pot(graph) -> {"energy": [n_frames],
"forces": [n_atoms, 3], ...}`` on a graph dict with the keys of :mod:`legato.data.keys`.
All replicas go into one batched graph, so one call serves the whole batch.
"""

from __future__ import annotations

import torch

from legato.data import keys as K
from legato.dtypes import module_dtype
from legato.errors import LegatoError
from legato.md.neighbors import MAX_COORDINATE_A, Edges, VerletList
from legato.md.state import DTYPE, MDState, per_replica_sum


def potential_dtype(potential: torch.nn.Module) -> torch.dtype:
    """The dtype of the potential's floating parameters (float64 if it has none)."""
    return module_dtype(potential, DTYPE)


def potential_r_max(potential: torch.nn.Module) -> float:
    """Cutoff radius of a potential: ``r_max`` attribute or ``hparams['r_max']``."""
    r = getattr(potential, "r_max", None)
    if r is None:
        r = getattr(potential, "hparams", {}).get("r_max")
    if r is None:
        raise ValueError("potential has no r_max (attribute or hparams['r_max'])")
    return float(r)


def unusable_replicas(state: MDState) -> torch.Tensor:  # [R] bool
    """Replicas whose positions are non-finite or beyond ``MAX_COORDINATE_A``: they are not
    passed to the potential (their energy and forces are NaN, which the non-finite guard
    reports as ``nonfinite``)."""
    bad_atom = ~torch.isfinite(state.positions).all(1) | (state.positions.abs().amax(1) > MAX_COORDINATE_A)
    return per_replica_sum(bad_atom.to(DTYPE), state.batch, state.n_replicas) > 0


def is_state_failure(exc: BaseException) -> bool:
    """Whether an exception of the potential is one a blown-up physical state can cause.

    Those are: a :class:`LegatoError` raised by the potential (e.g. too many neighbours),
    running out of memory (absurd densities), and floating-point overflow. Anything else
    (``TypeError``, ``IndexError``, a shape mismatch, ...) is a bug and must not be recorded
    as a replica's failure.
    """
    if isinstance(exc, (LegatoError, MemoryError, OverflowError, FloatingPointError, torch.OutOfMemoryError)):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "allocate memory" in text)


class ForceField:
    """Energies and forces of a batch of replicas from one potential call.

    Builds the graph from the Verlet list (edges beyond r_max filtered out), casts it to the
    potential's dtype, and casts the results back to float64. Replicas with non-finite or
    absurd positions are left out of the call (NaN results). If the potential raises an
    error a blown-up state can cause (:func:`is_state_failure`), the replicas are evaluated
    one by one and those that still fail get NaN results (recorded in :attr:`errors`), so a
    bad replica cannot take the batch down; any other exception propagates.
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

    def _evaluate(self, state: MDState, edges: Edges) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.potential(self.graph(state, edges))
        energy = out[K.TOTAL_ENERGY].detach().to("cpu", DTYPE).reshape(state.n_replicas)
        forces = out[K.FORCES].detach().to("cpu", DTYPE).reshape(state.n_atoms, 3)
        return energy, forces

    def __call__(self, state: MDState) -> tuple[torch.Tensor, torch.Tensor]:
        """Potential energy [R] (eV) and forces [n_atoms, 3] (eV/Å), float64."""
        edges = self.neighbors.edges(state)
        self.last_edges = edges
        self.n_calls += 1
        usable = ~unusable_replicas(state)
        all_usable = bool(usable.all())
        if all_usable:
            try:
                return self._evaluate(state, edges)
            except Exception as exc:
                if not is_state_failure(exc):
                    raise
        energy = torch.full((state.n_replicas,), float("nan"), dtype=DTYPE)
        forces = torch.full((state.n_atoms, 3), float("nan"), dtype=DTYPE)
        groups = [usable] if not all_usable and bool(usable.any()) else []
        if all_usable:  # the batch raised: isolate the replica(s) that make the potential fail
            groups = [torch.arange(state.n_replicas) == r for r in range(state.n_replicas)]
        for keep in groups:
            try:
                e, f = self._evaluate(state.select(keep), _edges_subset(edges, state, keep))
            except Exception as exc:
                if not is_state_failure(exc):
                    raise
                if int(keep.sum()) > 1:  # a subset: retry its replicas one by one
                    groups.extend(torch.arange(state.n_replicas) == r for r in torch.nonzero(keep).flatten())
                    continue
                rid = int(state.replica_ids[keep][0])
                first = str(exc).splitlines()[0] if str(exc) else ""
                self.errors[rid] = f"{type(exc).__name__}: {first}"
                continue
            energy[keep] = e
            forces[keep[state.batch]] = f
        return energy, forces

    def min_distance(self, n_replicas: int) -> torch.Tensor:
        """Closest pair distance per replica [R] (Å) at the last call; inf if no pair < r_max."""
        out = torch.full((n_replicas,), float("inf"), dtype=DTYPE)
        e = self.last_edges
        if e is None or e.lengths.numel() == 0:
            return out
        return out.scatter_reduce_(0, e.edge_batch, e.lengths, reduce="amin", include_self=True)

    def pair_distance_ratio(
        self, species: torch.Tensor, n_replicas: int, limits: torch.Tensor
    ) -> torch.Tensor:
        """min over atom pairs of (distance / limit of their species pair) per replica [R] at
        the last call; limits [n_types, n_types] Å, 0 where unlimited; inf if no limited pair."""
        out = torch.full((n_replicas,), float("inf"), dtype=DTYPE)
        e = self.last_edges
        if e is None or e.lengths.numel() == 0:
            return out
        lim = limits.to(e.lengths.device)[species[e.edge_index[0]], species[e.edge_index[1]]]  # [E]
        sel = lim > 0
        ratio = (e.lengths[sel] / lim[sel]).to(DTYPE).cpu()
        return out.scatter_reduce_(0, e.edge_batch[sel].cpu(), ratio, reduce="amin", include_self=True)


def _edges_subset(edges: Edges, state: MDState, keep: torch.Tensor) -> Edges:
    """The edges of the replicas where ``keep`` [R] is True, renumbered for that sub-batch."""
    sel = keep[edges.edge_batch]  # [E]
    atom_index = torch.cumsum(keep[state.batch].long(), 0) - 1  # [n_atoms] index in the sub-batch
    batch_index = torch.cumsum(keep.long(), 0) - 1  # [R]
    return Edges(
        edge_index=atom_index[edges.edge_index[:, sel]],
        shifts=edges.shifts[sel],
        lengths=edges.lengths[sel],
        edge_batch=batch_index[edges.edge_batch[sel]],
    )
