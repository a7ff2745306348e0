"""Integrators as pure init/step pairs on a batched :class:`MDState`.

Each integrator has ``init(state, force_fn) -> state`` (forces evaluated, thermostat
variables set), ``step(state, force_fn) -> state`` (one time step; the input is not
modified) and ``conserved(state) -> [R]`` (eV), the quantity its exact dynamics conserves:

- :class:`VelocityVerlet` (NVE): H = U + K.
- :class:`NoseHooverChain` (NVT, Martyna–Tuckerman–Klein chain, Suzuki–Yoshida factorised):
  H = U + K + Σ_k ½Q_k v_k² + N_f·kT·ξ₁ + kT·Σ_{k≥2} ξ_k.
- :class:`LangevinBAOAB` (NVT): U + K + the energy handed to the bath by the O steps.

``force_fn(state) -> (energy [R], forces [n_atoms, 3])`` (eV, eV/Å, float64), e.g. a
:class:`legato.md.forces.ForceField`. Internally time is in ASE units (t = timestep_fs·FS).
Random numbers come from per-replica streams keyed by (seed, purpose, step), so a replica's
trajectory does not depend on which other replicas share its batch, and a restart needs no
generator state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
import torch

from legato.md.state import DTYPE, MDState, per_replica_sum
from legato.units import FS, KB_EV_PER_K

ForceFn = Callable[[MDState], tuple[torch.Tensor, torch.Tensor]]

#: purposes of the per-replica random streams
STREAM_VELOCITIES = 1
STREAM_LANGEVIN = 2


def replica_normal(seed: int, stream: int, step: int, n_atoms: int) -> torch.Tensor:
    """Standard normal numbers [n_atoms, 3] from the stream (seed, stream, step)."""
    rng = np.random.default_rng([int(seed), int(stream), int(step)])
    return torch.from_numpy(rng.standard_normal((n_atoms, 3)))


def batch_normal(state: MDState, stream: int, step: int) -> torch.Tensor:  # [n_atoms, 3]
    counts = state.atoms_per_replica().tolist()
    seeds = state.seeds.tolist()
    return torch.cat([replica_normal(s, stream, step, n) for s, n in zip(seeds, counts, strict=True)])


def remove_total_momentum(
    p: torch.Tensor, masses: torch.Tensor, batch: torch.Tensor, n_replicas: int
) -> torch.Tensor:
    """p_i − m_i·P/M per replica (replicas of one atom are left alone). [n_atoms, 3]"""
    total_p = per_replica_sum(p, batch, n_replicas)  # [R, 3]
    total_m = per_replica_sum(masses, batch, n_replicas)  # [R]
    n = torch.bincount(batch, minlength=n_replicas)
    corr = torch.where((n > 1)[:, None], total_p / total_m[:, None], torch.zeros_like(total_p))
    return p - masses[:, None] * corr[batch]


def maxwell_boltzmann(state: MDState, temperature_K: float, exact: bool = True) -> MDState:
    """Momenta drawn at T from each replica's own seed, zero total momentum per replica.

    With ``exact`` the momenta are rescaled so each replica's temperature is exactly T
    (as LAMMPS' ``velocity create`` does).
    """
    kt = KB_EV_PER_K * float(temperature_K)
    z = batch_normal(state, STREAM_VELOCITIES, 0)
    p = z * torch.sqrt(state.masses * kt)[:, None]
    p = remove_total_momentum(p, state.masses, state.batch, state.n_replicas)
    new = replace(state, momenta=p)
    if exact and temperature_K > 0:
        t_now = new.temperature_K()
        scale = torch.sqrt(temperature_K / t_now.clamp_min(1e-300))
        new = replace(new, momenta=p * scale[new.batch][:, None])
    return new


def _with_forces(state: MDState, force_fn: ForceFn) -> MDState:
    energy, forces = force_fn(state)
    return replace(state, energy=energy, forces=forces)


def _kick(state: MDState, h: float) -> torch.Tensor:  # [n_atoms, 3]
    return state.momenta + h * state.forces


def _drift(state: MDState, p: torch.Tensor, h: float) -> torch.Tensor:  # [n_atoms, 3]
    return state.positions + h * p / state.masses[:, None]


class VelocityVerlet:
    """Velocity Verlet (NVE)."""

    ensemble = "nve"

    def __init__(self, timestep_fs: float):
        self.timestep_fs = float(timestep_fs)
        self.dt = self.timestep_fs * FS

    def init(self, state: MDState, force_fn: ForceFn) -> MDState:
        if state.forces is None or state.energy is None:
            state = _with_forces(state, force_fn)
        return replace(state, thermostat={})

    def step(self, state: MDState, force_fn: ForceFn) -> MDState:
        p = _kick(state, 0.5 * self.dt)
        moved = replace(state, positions=_drift(state, p, self.dt), momenta=p)
        moved = _with_forces(moved, force_fn)
        return replace(moved, momenta=_kick(moved, 0.5 * self.dt), step=state.step + 1)

    def conserved(self, state: MDState) -> torch.Tensor:  # [R] eV
        return state.energy + state.kinetic_energy()


#: Suzuki–Yoshida weights
_SY_WEIGHTS = {
    1: (1.0,),
    3: (
        1.0 / (2.0 - 2.0 ** (1 / 3)),
        1.0 - 2.0 / (2.0 - 2.0 ** (1 / 3)),
        1.0 / (2.0 - 2.0 ** (1 / 3)),
    ),
}


class NoseHooverChain:
    """Nosé–Hoover chain thermostat (NVT), velocity Verlet for the particles.

    Chain masses Q₁ = N_f·kT·τ², Q_k = kT·τ² (τ = ``tau_fs``; the paper's LAMMPS input
    uses τ = 100·Δt, the default). Thermostat variables per replica: ``xi`` [R, M] and
    ``v_xi`` [R, M] (ASE time units), ``q`` [R, M] (eV·t²).
    """

    ensemble = "nvt"

    def __init__(
        self,
        timestep_fs: float,
        temperature_K: float,
        tau_fs: float | None = None,
        chain_length: int = 3,
        n_yoshida: int = 3,
        n_substeps: int = 1,
    ):
        if n_yoshida not in _SY_WEIGHTS:
            raise ValueError("n_yoshida must be 1 or 3")
        if chain_length < 1 or n_substeps < 1:
            raise ValueError("chain_length and n_substeps must be >= 1")
        self.timestep_fs = float(timestep_fs)
        self.dt = self.timestep_fs * FS
        self.temperature_K = float(temperature_K)
        self.kt = KB_EV_PER_K * self.temperature_K
        self.tau_fs = 100.0 * self.timestep_fs if tau_fs is None else float(tau_fs)
        self.chain_length = int(chain_length)
        self.weights = _SY_WEIGHTS[n_yoshida]
        self.n_substeps = int(n_substeps)

    def init(self, state: MDState, force_fn: ForceFn) -> MDState:
        if state.forces is None or state.energy is None:
            state = _with_forces(state, force_fn)
        r, m = state.n_replicas, self.chain_length
        tau = self.tau_fs * FS
        q = torch.full((r, m), self.kt * tau * tau, dtype=DTYPE)
        q[:, 0] = state.degrees_of_freedom() * self.kt * tau * tau
        zeros = torch.zeros((r, m), dtype=DTYPE)
        return replace(state, thermostat={"xi": zeros, "v_xi": zeros.clone(), "q": q})

    def _chain_half_step(self, state: MDState) -> MDState:
        """Propagate the chain and scale momenta over Δt/2 (exp(iL_NHC Δt/2)).

        The chain is tiny ([R, M]); it runs in numpy, where small operations are cheap.
        """
        xi = state.thermostat["xi"].numpy().copy()
        v = state.thermostat["v_xi"].numpy().copy()
        q = state.thermostat["q"].numpy()
        kt, m = self.kt, self.chain_length
        dof = state.degrees_of_freedom().numpy()  # [R]
        ke2 = 2.0 * state.kinetic_energy().numpy()  # [R] (2K)
        scale = np.ones_like(ke2)

        def force(k: int) -> np.ndarray:  # G_k [R]
            if k == 0:
                return (ke2 * scale * scale - dof * kt) / q[:, 0]
            return (q[:, k - 1] * v[:, k - 1] ** 2 - kt) / q[:, k]

        # a replica that blows up may overflow exp(): it then carries inf/nan momenta, which
        # the failure detector reports for that replica alone (the chain is per replica)
        with np.errstate(over="ignore", invalid="ignore"):
            for _ in range(self.n_substeps):
                for w in self.weights:
                    h = w * 0.5 * self.dt / self.n_substeps
                    v[:, m - 1] += 0.5 * h * force(m - 1)
                    for k in range(m - 2, -1, -1):
                        damp = np.exp(-0.25 * h * v[:, k + 1])
                        v[:, k] = (v[:, k] * damp + 0.5 * h * force(k)) * damp
                    scale = scale * np.exp(-h * v[:, 0])
                    xi += h * v
                    for k in range(m - 1):
                        damp = np.exp(-0.25 * h * v[:, k + 1])
                        v[:, k] = (v[:, k] * damp + 0.5 * h * force(k)) * damp
                    v[:, m - 1] += 0.5 * h * force(m - 1)
        scale_t = torch.from_numpy(scale)
        return replace(
            state,
            momenta=state.momenta * scale_t[state.batch][:, None],
            thermostat={
                "xi": torch.from_numpy(xi),
                "v_xi": torch.from_numpy(v),
                "q": state.thermostat["q"],
            },
        )

    def step(self, state: MDState, force_fn: ForceFn) -> MDState:
        s = self._chain_half_step(state)
        p = _kick(s, 0.5 * self.dt)
        s = _with_forces(replace(s, positions=_drift(s, p, self.dt), momenta=p), force_fn)
        s = replace(s, momenta=_kick(s, 0.5 * self.dt))
        s = self._chain_half_step(s)
        return replace(s, step=state.step + 1)

    def conserved(self, state: MDState) -> torch.Tensor:  # [R] eV
        xi, v, q = (state.thermostat[k] for k in ("xi", "v_xi", "q"))
        bath = 0.5 * (q * v * v).sum(1) + state.degrees_of_freedom() * self.kt * xi[:, 0]
        bath = bath + self.kt * xi[:, 1:].sum(1)
        return state.energy + state.kinetic_energy() + bath


class LangevinBAOAB:
    """Langevin dynamics, BAOAB splitting (Leimkuhler–Matthews), friction γ = ``friction_per_fs``.

    The O step's noise is projected to keep each replica's total momentum at zero, so the
    temperature uses N_f = 3N − 3 as for the other ensembles. ``thermostat["bath"]`` [R]
    accumulates the kinetic energy removed by the O steps.
    """

    ensemble = "langevin"

    def __init__(self, timestep_fs: float, temperature_K: float, friction_per_fs: float = 0.01):
        if friction_per_fs < 0:
            raise ValueError("friction_per_fs must be >= 0")
        self.timestep_fs = float(timestep_fs)
        self.dt = self.timestep_fs * FS
        self.temperature_K = float(temperature_K)
        self.kt = KB_EV_PER_K * self.temperature_K
        self.friction_per_fs = float(friction_per_fs)
        self.c1 = float(np.exp(-self.friction_per_fs * self.timestep_fs))
        self.c2 = float(np.sqrt(1.0 - self.c1 * self.c1))

    def init(self, state: MDState, force_fn: ForceFn) -> MDState:
        if state.forces is None or state.energy is None:
            state = _with_forces(state, force_fn)
        return replace(state, thermostat={"bath": torch.zeros(state.n_replicas, dtype=DTYPE)})

    def step(self, state: MDState, force_fn: ForceFn) -> MDState:
        h = 0.5 * self.dt
        p = _kick(state, h)  # B
        x = _drift(state, p, h)  # A
        k_before = per_replica_sum(0.5 * (p * p).sum(1) / state.masses, state.batch, state.n_replicas)
        noise = batch_normal(state, STREAM_LANGEVIN, state.step) * torch.sqrt(state.masses * self.kt)[:, None]
        noise = remove_total_momentum(noise, state.masses, state.batch, state.n_replicas)
        p = self.c1 * p + self.c2 * noise  # O
        k_after = per_replica_sum(0.5 * (p * p).sum(1) / state.masses, state.batch, state.n_replicas)
        s = replace(state, momenta=p, positions=x)
        s = replace(s, positions=_drift(s, p, h))  # A
        s = _with_forces(s, force_fn)
        bath = state.thermostat["bath"] + (k_before - k_after)
        return replace(s, momenta=_kick(s, h), thermostat={"bath": bath}, step=state.step + 1)  # B

    def conserved(self, state: MDState) -> torch.Tensor:  # [R] eV
        return state.energy + state.kinetic_energy() + state.thermostat["bath"]


Integrator = VelocityVerlet | NoseHooverChain | LangevinBAOAB


def make_integrator(
    ensemble: str,
    timestep_fs: float,
    temperature_K: float,
    tau_fs: float | None = None,
    chain_length: int = 3,
    friction_per_fs: float = 0.01,
) -> Integrator:
    """Integrator for ``ensemble`` in {"nve", "nvt" (Nosé–Hoover chain), "langevin"}."""
    if ensemble == "nve":
        return VelocityVerlet(timestep_fs)
    if ensemble == "nvt":
        return NoseHooverChain(timestep_fs, temperature_K, tau_fs, chain_length)
    if ensemble == "langevin":
        return LangevinBAOAB(timestep_fs, temperature_K, friction_per_fs)
    raise ValueError(f"unknown ensemble {ensemble!r} (nve, nvt, langevin)")
