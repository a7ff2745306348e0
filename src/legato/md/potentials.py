"""Reference pair potentials with the model's call signature: ``pot(graph) -> {"energy",
"forces", "atomic_energy"}``. Used to test the MD engine against known physics.

Both are smoothly switched off between ``switch_on_A`` and ``r_max`` by the quintic
S(x) = 1 − 10x³ + 15x⁴ − 6x⁵ (x = (r − r_on)/(r_max − r_on)), so energy and forces are
continuous (C²) and velocity Verlet's energy error scales cleanly as Δt².
The graph must hold the full (directed, symmetric) neighbour list, as the model's does.
"""

from __future__ import annotations

import torch

from legato.data import keys as K


def _switch(r: torch.Tensor, r_on: float, r_off: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Switching function S(r) and dS/dr on [r_on, r_off]."""
    width = r_off - r_on
    x = ((r - r_on) / width).clamp(0.0, 1.0)
    s = 1.0 - x**3 * (10.0 - 15.0 * x + 6.0 * x * x)
    ds = -30.0 * x * x * (1.0 - x) ** 2 / width
    return s, ds


class PairPotential(torch.nn.Module):
    """E = ½ Σ_edges φ(r_ij)·S(r_ij) over a full neighbour list; analytic forces."""

    def __init__(self, r_max: float, switch_on_A: float | None = None, dtype=torch.float64):
        super().__init__()
        self.r_max = float(r_max)
        self.r_on = 0.8 * self.r_max if switch_on_A is None else float(switch_on_A)
        if not 0 < self.r_on < self.r_max:
            raise ValueError("need 0 < switch_on_A < r_max")
        # a buffer fixes the potential's dtype (the MD engine casts graphs to it)
        self.register_buffer("_dtype_marker", torch.zeros((), dtype=dtype))

    def pair(self, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """φ(r) and dφ/dr for edge lengths r [n_edges]."""
        raise NotImplementedError

    def forward(self, graph: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        pos = graph[K.POSITIONS]  # [n_atoms, 3]
        batch = graph[K.BATCH]  # [n_atoms]
        cell = graph[K.CELL]  # [n_frames, 3, 3]
        i, j = graph[K.EDGE_INDEX]  # [n_edges] each
        shifts = graph[K.EDGE_SHIFT].to(pos.dtype)  # [n_edges, 3]
        n_frames = cell.shape[0]
        vec = pos[j] - pos[i] + torch.einsum("ek,ekl->el", shifts, cell[batch[i]])  # [n_edges, 3]
        r = vec.norm(dim=1)  # [n_edges]
        phi, dphi = self.pair(r)
        s, ds = _switch(r, self.r_on, self.r_max)
        inside = r < self.r_max
        e_edge = torch.where(inside, phi * s, torch.zeros_like(r))  # [n_edges]
        de_edge = torch.where(inside, dphi * s + phi * ds, torch.zeros_like(r))
        atomic = torch.zeros(pos.shape[0], dtype=pos.dtype).index_add_(0, i, 0.5 * e_edge)
        # F_i = Σ_j dφ/dr · r̂_ij (each unordered pair is listed in both directions)
        forces = torch.zeros_like(pos).index_add_(0, i, (de_edge / r)[:, None] * vec)
        energy = torch.zeros(n_frames, dtype=pos.dtype).index_add_(0, batch, atomic)
        return {K.TOTAL_ENERGY: energy, K.ATOMIC_ENERGY: atomic, K.FORCES: forces}


class LennardJones(PairPotential):
    """φ(r) = 4ε[(σ/r)¹² − (σ/r)⁶], one ε, σ for all species. Argon: ε = 0.0104 eV, σ = 3.40 Å."""

    def __init__(
        self,
        epsilon_eV: float = 0.0104,
        sigma_A: float = 3.40,
        r_max: float = 8.5,
        switch_on_A: float | None = None,
        dtype=torch.float64,
    ):
        super().__init__(r_max, switch_on_A, dtype)
        self.epsilon = float(epsilon_eV)
        self.sigma = float(sigma_A)

    def pair(self, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        sr6 = (self.sigma / r) ** 6
        phi = 4.0 * self.epsilon * (sr6 * sr6 - sr6)
        dphi = -24.0 * self.epsilon * (2.0 * sr6 * sr6 - sr6) / r
        return phi, dphi


class HarmonicPairs(PairPotential):
    """φ(r) = ½k(r − r₀)² between all pairs closer than r_max (a smooth spring network)."""

    def __init__(
        self,
        k_eV_per_A2: float = 1.0,
        r0_A: float = 1.0,
        r_max: float = 2.0,
        switch_on_A: float | None = None,
        dtype=torch.float64,
    ):
        super().__init__(r_max, switch_on_A, dtype)
        self.k = float(k_eV_per_A2)
        self.r0 = float(r0_A)

    def pair(self, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        d = r - self.r0
        return 0.5 * self.k * d * d, self.k * d
