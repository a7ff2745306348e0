"""Ring-polymer integrators on the batched MD state: NVT-PIMD (PILE-L / PILE-G), TRPMD, NVE-RPMD.

One step is the BCOCB splitting of Korol, Bou-Rabee and Miller (J. Chem. Phys. 151, 124103,
2019): half kick by the physical forces (B), free ring-polymer propagation over Δt/2 in
normal modes (C), the Langevin step on the normal-mode momenta over Δt (O), C, B. The free
propagation of mode k (frequency ω_k, see :mod:`legato.pimd.normal_modes`) is either exact
(rotation by ω_k·h) or its Cayley approximation (default; strongly stable for any Δt, ibid.):

    p ← [(1 − a²) p − m ω_k² h q] / (1 + a²),   q ← [(h/m) p + (1 − a²) q] / (1 + a²),   a = ω_k h / 2.

Thermostats (Ceriotti, Parrinello, Markland, Manolopoulos, J. Chem. Phys. 133, 124104, 2010):
internal modes get Langevin friction γ_k = 2λω_k (λ = 1: critical damping); the centroid
gets Langevin friction 1/τ₀ (PILE-L) or a stochastic velocity rescaling of the centroid
kinetic energy per polymer (PILE-G; Bussi, Donadio, Parrinello, J. Chem. Phys. 126, 014101,
2007). TRPMD (Rossi, Ceriotti, Manolopoulos, J. Chem. Phys. 140, 234116, 2014) thermostats
the internal modes only; NVE-RPMD none. Centroid noise is projected to keep each polymer's
total momentum zero (as :class:`legato.md.integrators.LangevinBAOAB` does), so P = 1 with
PILE-L is that integrator, step for step (friction 1/τ₀).

Random numbers come per polymer from the streams (polymer seed, purpose, step), drawn with
the shape [P, atoms, 3]: a polymer's trajectory does not depend on its batch neighbours.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from legato.md.integrators import STREAM_LANGEVIN, STREAM_VELOCITIES, ForceFn, remove_total_momentum
from legato.md.state import DTYPE, MDState
from legato.pimd.normal_modes import (
    RingLayout,
    free_frequencies,
    from_normal_modes,
    normal_mode_matrix,
    polymer_view,
    ring_layout,
    to_normal_modes,
)
from legato.units import FS, KB_EV_PER_K

#: purpose of the per-polymer stream of the PILE-G centroid rescaling
STREAM_CENTROID = 3
ENSEMBLES = ("nvt", "trpmd", "nve")


def polymer_normal(state: MDState, n_beads: int, stream: int, step: int) -> torch.Tensor:
    """Standard normals [n_atoms, 3] (flat batch order), drawn [P, atoms, 3] per polymer."""
    counts = state.atoms_per_replica()[::n_beads].tolist()
    seeds = state.seeds[::n_beads].tolist()
    parts = [
        np.random.default_rng([int(s), int(stream), int(step)]).standard_normal((n_beads * n, 3))
        for s, n in zip(seeds, counts, strict=True)
    ]
    return torch.from_numpy(np.concatenate(parts))


def polymer_momenta(state: MDState, n_beads: int, temperature_K: float, exact: bool = True) -> MDState:
    """Bead momenta at T_P = P·T (each polymer from its seed), total momentum zero per polymer.

    ``exact`` rescales each polymer's momenta to the kinetic temperature T (P = 1: exactly
    :func:`legato.md.integrators.maxwell_boltzmann`).
    """
    lay = ring_layout(state, n_beads)
    kt = KB_EV_PER_K * float(temperature_K)
    z = polymer_normal(state, n_beads, STREAM_VELOCITIES, 0)
    p = z * torch.sqrt(state.masses * (n_beads * kt))[:, None]
    poly_batch = torch.div(state.batch, n_beads, rounding_mode="floor")  # [n_atoms] polymer position
    p = remove_total_momentum(p, state.masses, poly_batch, lay.n_polymers)
    new = replace(state, momenta=p)
    if exact and temperature_K > 0:
        t_now = polymer_view(new, n_beads).temperature_K()
        scale = torch.sqrt(temperature_K / t_now.clamp_min(1e-300))
        new = replace(new, momenta=p * scale[poly_batch][:, None])
    return new


def centroid_dof(lay: RingLayout) -> torch.Tensor:  # [R] float: 3N − 3 (3 for one atom)
    n = lay.atoms_per_polymer().to(DTYPE)
    return torch.where(n > 1, 3.0 * n - 3.0, 3.0 * n)


class RingPolymerIntegrator:
    """BCOCB ring-polymer step for ``ensemble`` in {"nvt", "trpmd", "nve"} (see module doc).

    ``conserved(state)`` [R polymers] = Σ_beads (K + V) + spring energy + the energy handed
    to the thermostats (``thermostat["bath"]`` [R·P], a polymer's total on its bead 0), in eV.
    """

    def __init__(
        self,
        n_beads: int,
        timestep_fs: float,
        temperature_K: float,
        ensemble: str = "nvt",
        centroid: str = "pile_l",
        tau_centroid_fs: float = 100.0,
        pile_lambda: float | None = None,
        propagator: str = "cayley",
    ):
        if ensemble not in ENSEMBLES:
            raise ValueError(f"unknown PIMD ensemble {ensemble!r} ({', '.join(ENSEMBLES)})")
        if centroid not in ("pile_l", "pile_g") or propagator not in ("cayley", "exact"):
            raise ValueError("centroid must be pile_l or pile_g; propagator cayley or exact")
        if n_beads < 1 or temperature_K <= 0 or tau_centroid_fs <= 0:
            raise ValueError("need n_beads >= 1, temperature_K > 0, tau_centroid_fs > 0")
        self.ensemble = ensemble
        self.n_beads = int(n_beads)
        self.timestep_fs = float(timestep_fs)
        self.dt = self.timestep_fs * FS
        self.temperature_K = float(temperature_K)
        self.kt = KB_EV_PER_K * self.temperature_K
        self.centroid = centroid
        self.tau_centroid_fs = float(tau_centroid_fs)
        lam = (0.5 if ensemble == "trpmd" else 1.0) if pile_lambda is None else float(pile_lambda)
        self.pile_lambda = lam
        self.propagator = propagator
        self.cmat = normal_mode_matrix(self.n_beads)  # [P, P]
        self.omega = free_frequencies(self.n_beads, self.temperature_K)  # [P] 1/t_ASE
        gamma = 2.0 * lam * self.omega  # [P] 1/t_ASE
        gamma[0] = FS / self.tau_centroid_fs if (ensemble == "nvt" and centroid == "pile_l") else 0.0
        if ensemble == "nve":
            gamma.zero_()
        self.c1 = torch.exp(-gamma * self.dt)  # [P]
        if ensemble == "nvt" and centroid == "pile_l":  # bitwise the classical Langevin factor
            self.c1[0] = float(np.exp(-(1.0 / self.tau_centroid_fs) * self.timestep_fs))
        self.c2 = torch.sqrt(1.0 - self.c1 * self.c1)  # [P]

    # ------------------------------------------------------------------ pieces
    def init(self, state: MDState, force_fn: ForceFn) -> MDState:
        ring_layout(state, self.n_beads)  # validates the batch
        if state.forces is None or state.energy is None:
            energy, forces = force_fn(state)
            state = replace(state, energy=energy, forces=forces)
        # per bead replica (so that MDState.select keeps it); a polymer's total sits on bead 0
        return replace(state, thermostat={"bath": torch.zeros(state.n_replicas, dtype=DTYPE)})

    def _free(self, q: torch.Tensor, p: torch.Tensor, m: torch.Tensor, h: float):
        """Free ring-polymer propagation over ``h`` of normal modes q, p [P, N, 3], masses m [N]."""
        w = self.omega[:, None, None]  # [P, 1, 1]
        mm = m[None, :, None]  # [1, N, 1]
        if self.propagator == "exact":
            c, s = torch.cos(w * h), torch.sin(w * h)
            safe = torch.where(w > 0, w, torch.ones_like(w))
            q_new = torch.where(w > 0, c * q + s * p / (mm * safe), q + h * p / mm)
            return q_new, c * p - mm * w * s * q
        a2 = (0.5 * h * w) ** 2
        den = 1.0 + a2
        p_new = ((1.0 - a2) * p - mm * (w * w) * h * q) / den
        q_new = (h * p / mm + (1.0 - a2) * q) / den
        return q_new, p_new

    def _thermostat(
        self, state: MDState, lay: RingLayout, p: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """O step on normal-mode momenta p [P, N, 3]; returns (p, energy given to the bath [R])."""
        if self.ensemble == "nve":
            return p, torch.zeros(lay.n_polymers, dtype=DTYPE)
        m = lay.masses
        k_before = lay.polymer_sum(0.5 * (p * p).sum((0, 2)) / m)
        xi = lay.gather(polymer_normal(state, self.n_beads, STREAM_LANGEVIN, state.step))  # [P, N, 3]
        noise = xi * torch.sqrt(m * (self.n_beads * self.kt))[None, :, None]
        noise[0] = remove_total_momentum(noise[0], m, lay.polymer, lay.n_polymers)
        c1, c2 = self.c1[:, None, None], self.c2[:, None, None]
        new = c1 * p + c2 * noise
        if self.ensemble == "nvt" and self.centroid == "pile_g":
            new[0] = self._svr_centroid(state, lay, p[0])
        elif self.ensemble != "nvt":
            new[0] = p[0]
        k_after = lay.polymer_sum(0.5 * (new * new).sum((0, 2)) / m)
        return new, k_before - k_after

    def _svr_centroid(self, state: MDState, lay: RingLayout, p0: torch.Tensor) -> torch.Tensor:
        """Bussi stochastic velocity rescaling of each polymer's centroid momenta p0 [N, 3]."""
        m = lay.masses
        kin = lay.polymer_sum(0.5 * (p0 * p0).sum(1) / m).numpy()  # [R]
        dof = centroid_dof(lay).numpy()  # [R]
        target = 0.5 * dof * self.n_beads * self.kt  # [R]
        c = float(np.exp(-self.timestep_fs / self.tau_centroid_fs))
        alpha = np.ones_like(kin)
        seeds = state.seeds[:: self.n_beads].tolist()
        for r, seed in enumerate(seeds):
            if kin[r] <= 0:
                continue
            nf = int(dof[r])
            z = np.random.default_rng([int(seed), STREAM_CENTROID, state.step]).standard_normal(nf)
            r1, rest = z[0], float((z[1:] ** 2).sum())
            ratio = target[r] / (nf * kin[r])
            a2 = c + (1.0 - c) * (rest + r1 * r1) * ratio + 2.0 * r1 * np.sqrt(c * (1.0 - c) * ratio)
            sign = np.sign(r1 + np.sqrt(c / ((1.0 - c) * ratio)))
            alpha[r] = sign * np.sqrt(max(a2, 0.0))
        return p0 * torch.from_numpy(alpha)[lay.polymer][:, None]

    # ------------------------------------------------------------------ the step
    def step(self, state: MDState, force_fn: ForceFn) -> MDState:
        h = 0.5 * self.dt
        lay = ring_layout(state, self.n_beads)
        m = lay.masses
        p = state.momenta + h * state.forces  # B
        q_nm = to_normal_modes(lay.gather(state.positions), self.cmat)
        p_nm = to_normal_modes(lay.gather(p), self.cmat)
        q_nm, p_nm = self._free(q_nm, p_nm, m, h)  # C
        p_nm, to_bath = self._thermostat(state, lay, p_nm)  # O
        q_nm, p_nm = self._free(q_nm, p_nm, m, h)  # C
        s = replace(
            state,
            positions=lay.scatter(from_normal_modes(q_nm, self.cmat)),
            momenta=lay.scatter(from_normal_modes(p_nm, self.cmat)),
        )
        energy, forces = force_fn(s)
        bath = state.thermostat["bath"].clone()  # [R·P]
        bath[:: self.n_beads] += to_bath
        return replace(
            s,
            energy=energy,
            forces=forces,
            momenta=s.momenta + h * forces,  # B
            thermostat={"bath": bath},
            step=state.step + 1,
        )

    # ------------------------------------------------------------------ energies
    def spring_energy(self, state: MDState) -> torch.Tensor:  # [R] eV
        """Σ_k ½ m ω_P² |q_k − q_{k+1}|² per polymer (= Σ_k ½ m ω_k² |q̃_k|²)."""
        lay = ring_layout(state, self.n_beads)
        q_nm = to_normal_modes(lay.gather(state.positions), self.cmat)  # [P, N, 3]
        per_atom = 0.5 * lay.masses * ((self.omega**2)[:, None] * (q_nm * q_nm).sum(2)).sum(0)  # [N]
        return lay.polymer_sum(per_atom)

    def conserved(self, state: MDState) -> torch.Tensor:  # [R] eV
        n = self.n_beads
        kin = state.kinetic_energy().view(-1, n).sum(1)
        pot = state.energy.view(-1, n).sum(1)
        bath = state.thermostat["bath"].view(-1, n).sum(1)
        return kin + pot + self.spring_energy(state) + bath
