"""Ring-polymer physics: normal modes, the harmonic oscillator's kinetic energy at finite P and
as P grows, P = 1 is classical Langevin MD, NVE-RPMD energy error ∝ Δt², thermostat per mode."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from md_helpers import argon_cluster, lj
from pimd_helpers import (
    HarmonicWells,
    bead_state,
    discretised_kinetic,
    oscillator_atoms,
    oscillator_constants,
    quantum_kinetic,
)

from legato.md.forces import ForceField
from legato.md.integrators import LangevinBAOAB, maxwell_boltzmann
from legato.md.state import state_from_atoms
from legato.pimd.estimators import atom_estimators, block_average
from legato.pimd.integrator import RingPolymerIntegrator, polymer_momenta
from legato.pimd.normal_modes import (
    HBAR_EV_T,
    free_frequencies,
    normal_mode_matrix,
    ring_frequency,
    ring_layout,
    to_normal_modes,
)
from legato.units import FS, KB_EV_PER_K

torch.set_num_threads(1)
HBAR_OMEGA_EV = 0.1  # ≈ 807 cm⁻¹
MASS = 1.008


@pytest.mark.parametrize("p", [1, 2, 5, 8, 32])
def test_normal_modes_diagonalise_the_ring(p):
    """Cᵀ C = 1 and Cᵀ L C = diag(ω_k²/ω_P²) for the ring's spring matrix L."""
    c = normal_mode_matrix(p)
    assert torch.allclose(c.T @ c, torch.eye(p, dtype=c.dtype), atol=1e-13)
    ring = (
        2.0 * torch.eye(p, dtype=c.dtype) - torch.roll(torch.eye(p), 1, 0) - torch.roll(torch.eye(p), -1, 0)
    )
    if p == 1:
        ring = torch.zeros(1, 1, dtype=c.dtype)
    if p == 2:
        ring = torch.tensor([[2.0, -2.0], [-2.0, 2.0]], dtype=c.dtype)  # both neighbours are the same bead
    wp = ring_frequency(p, 100.0)
    expect = torch.diag(free_frequencies(p, 100.0) ** 2 / wp**2)
    assert torch.allclose(c.T @ ring @ c, expect, atol=1e-12)


def test_spring_energy_is_the_bead_difference_sum():
    atoms = oscillator_atoms(3, MASS)
    p, temp = 6, 150.0
    state = bead_state(atoms, p, 2)
    rng = np.random.default_rng(0)
    state = replace(
        state, positions=state.positions + torch.from_numpy(rng.normal(0, 0.1, (len(state.batch), 3)))
    )
    integ = RingPolymerIntegrator(p, 0.5, temp)
    lay = ring_layout(state, p)
    q = lay.gather(state.positions)  # [P, N, 3]
    diff = q - torch.roll(q, -1, 0)
    per_atom = 0.5 * lay.masses * ring_frequency(p, temp) ** 2 * (diff * diff).sum((0, 2))
    assert torch.allclose(integ.spring_energy(state), lay.polymer_sum(per_atom), rtol=1e-12)


def _oscillator_run(p: int, steps: int, timestep_fs: float, centroid: str = "pile_l", seed: int = 0):
    """K_cv and K_prim per degree of freedom for 32 independent 3-D oscillators, βħω = 8."""
    k, temp = oscillator_constants(HBAR_OMEGA_EV, 8.0, MASS)
    state = bead_state(oscillator_atoms(32, MASS), p, 2, seeds=[seed, seed + 1])
    wells = HarmonicWells(state.positions.clone(), k)
    integ = RingPolymerIntegrator(p, timestep_fs, temp, "nvt", centroid=centroid, tau_centroid_fs=20.0)
    state = integ.init(polymer_momenta(state, p, temp), wells)
    kcv, kprim, modes_p, modes_q = [], [], [], []
    lay = ring_layout(state, p)
    omega2 = (free_frequencies(p, temp) ** 2 + (HBAR_OMEGA_EV / HBAR_EV_T) ** 2)[:, None]
    for step in range(steps):
        state = integ.step(state, wells)
        if step < steps // 5:
            continue
        est = atom_estimators(state, integ)
        kcv.append(float(est["kinetic_cv"].mean()) / 3.0)
        kprim.append(float(est["kinetic_prim"].mean()) / 3.0)
        pn = to_normal_modes(lay.gather(state.momenta), integ.cmat)
        qn = to_normal_modes(lay.gather(state.positions - wells.anchors), integ.cmat)
        modes_p.append(((pn * pn).sum(2) / lay.masses).mean(1) / 3.0)  # [P] ⟨p̃²/m⟩ per dof
        modes_q.append((lay.masses * omega2 * (qn * qn).sum(2)).mean(1) / 3.0)  # [P] ⟨mΩ²q̃²⟩
    return kcv, kprim, torch.stack(modes_p).numpy(), torch.stack(modes_q).numpy(), temp


@pytest.mark.parametrize("p", [4, 32])
def test_harmonic_kinetic_energy_matches_the_discretised_path_integral(p):
    """Centroid-virial and primitive estimators vs the exact P-bead value (4 block errors)."""
    kcv, kprim, _, _, temp = _oscillator_run(p, steps=1500, timestep_fs=0.5)
    exact = discretised_kinetic(HBAR_OMEGA_EV, temp, p)
    for series in (kcv, kprim):
        mean, err = block_average(series, 10)
        assert abs(mean - exact) < 4.0 * err + 1e-3 * exact, (p, mean, err, exact)
    mean, err = block_average(kcv, 10)
    assert err < 0.01 * exact  # the check has teeth: errors far below the 29 % change from P = 4 to 32


def test_discretised_kinetic_energy_converges_to_the_quantum_value():
    """The exact P-bead value → (ħω/4)coth(βħω/2) (βħω = 8): 29 % low at P = 4, 0.8 % at P = 32."""
    _, temp = oscillator_constants(HBAR_OMEGA_EV, 8.0, MASS)
    exact = quantum_kinetic(HBAR_OMEGA_EV, temp)
    rel = {p: discretised_kinetic(HBAR_OMEGA_EV, temp, p) / exact - 1.0 for p in (1, 4, 32, 256)}
    assert rel[1] < -0.7 and -0.3 < rel[4] < -0.28 and -0.009 < rel[32] < -0.007 and abs(rel[256]) < 2e-4


@pytest.mark.slow
def test_harmonic_quantum_limit_with_32_beads():
    """A long 32-bead run: K_cv within 1.5 % of (ħω/4)coth(βħω/2) (P = 32 is 0.8 % low)."""
    kcv, _, _, _, temp = _oscillator_run(32, steps=6000, timestep_fs=0.5, centroid="pile_g", seed=7)
    mean, err = block_average(kcv, 10)
    exact_p = discretised_kinetic(HBAR_OMEGA_EV, temp, 32)
    assert abs(mean - exact_p) < 4.0 * err
    assert abs(mean / quantum_kinetic(HBAR_OMEGA_EV, temp) - 1.0) < 0.015


@pytest.mark.parametrize("centroid", ["pile_l", "pile_g"])
def test_thermostat_temperature_per_normal_mode(centroid):
    """Every normal mode: ⟨p̃²/m⟩ = ⟨mΩ_k²q̃²⟩ = P·kT per degree of freedom (harmonic wells)."""
    p = 8
    _, _, modes_p, modes_q, temp = _oscillator_run(p, steps=1500, timestep_fs=0.5, centroid=centroid)
    kt_p = p * KB_EV_PER_K * temp
    for k in range(p):
        for series in (modes_p[:, k], modes_q[:, k]):
            mean, err = block_average(series, 10)
            assert abs(mean - kt_p) < 4.0 * err + 0.01 * kt_p, (k, mean / kt_p, err / kt_p)


def test_one_bead_is_classical_langevin_md():
    """P = 1 with PILE-L (τ₀ = 1/γ) is legato md's Langevin BAOAB: same seed, same numbers."""
    atoms = argon_cluster(3)
    ff = ForceField(lj(7.0), skin_A=0.5)
    classical = maxwell_boltzmann(state_from_atoms([atoms, atoms], ["Ar"], seeds=[11, 12]), 60.0)
    ring = polymer_momenta(state_from_atoms([atoms, atoms], ["Ar"], seeds=[11, 12]), 1, 60.0)
    assert torch.equal(classical.momenta, ring.momenta)
    md = LangevinBAOAB(2.0, 60.0, friction_per_fs=0.01)
    pi = RingPolymerIntegrator(1, 2.0, 60.0, "nvt", tau_centroid_fs=100.0)
    classical, ring = md.init(classical, ff), pi.init(ring, ff)
    for _ in range(60):
        classical, ring = md.step(classical, ff), pi.step(ring, ff)
    assert torch.equal(classical.positions, ring.positions)
    assert torch.equal(classical.momenta, ring.momenta)
    assert torch.allclose(md.conserved(classical), pi.conserved(ring), rtol=0, atol=1e-12)


def _nve_error(timestep_fs: float, total_fs: float = 400.0) -> float:
    """Largest |H_P − H_P(0)| per atom of an 8-bead argon cluster in NVE-RPMD."""
    p = 8
    atoms = argon_cluster(3)
    atoms.set_masses([4.0] * len(atoms))  # light "argon": strong quantum springs
    ff = ForceField(lj(7.0), skin_A=0.5)
    state = state_from_atoms([atoms] * p, ["Ar"], seeds=[3] * p, replica_ids=list(range(p)))
    integ = RingPolymerIntegrator(p, timestep_fs, 20.0, "nve")
    state = integ.init(polymer_momenta(state, p, 20.0), ff)
    h0 = integ.conserved(state)
    worst = 0.0
    for _ in range(int(round(total_fs / timestep_fs))):
        state = integ.step(state, ff)
        worst = max(worst, float((integ.conserved(state) - h0).abs().max()))
    return worst / len(atoms)


def test_nve_rpmd_energy_error_scales_as_timestep_squared():
    errors = {dt: _nve_error(dt) for dt in (4.0, 2.0)}
    ratio = errors[4.0] / errors[2.0]
    assert errors[2.0] < 1e-4  # eV/atom
    assert 3.0 < ratio < 5.0, errors


def test_trpmd_centroid_spectrum_of_a_harmonic_oscillator_peaks_at_omega():
    """For a harmonic potential the RPMD centroid moves at ω exactly; TRPMD leaves the centroid
    unthermostatted: its VACF spectrum peaks at ħω = 100 meV within the stated resolution."""
    from legato.spectra.vacf import MEV_PER_THZ, peak_THz, vdos
    from legato.units import FS

    p, dt = 8, 1.0
    k, temp = oscillator_constants(HBAR_OMEGA_EV, 8.0, MASS)
    state = bead_state(oscillator_atoms(16, MASS), p, 2)
    wells = HarmonicWells(state.positions.clone(), k)
    state = polymer_momenta(state, p, temp)
    nvt = RingPolymerIntegrator(p, dt, temp, "nvt", tau_centroid_fs=20.0)
    state = nvt.init(state, wells)
    for _ in range(100):
        state = nvt.step(state, wells)
    trpmd = RingPolymerIntegrator(p, dt, temp, "trpmd")
    state = trpmd.init(state, wells)
    lay = ring_layout(state, p)
    v = []
    for _ in range(800):
        state = trpmd.step(state, wells)
        v.append((lay.gather(state.momenta).mean(0) / lay.masses[:, None]).numpy() * FS)  # [N, 3] Å/fs
    spec = vdos([np.stack(v)], ["H"] * lay.masses.numel(), dt, max_lag_fs=300.0)
    res_meV = spec.resolution_THz * MEV_PER_THZ
    assert res_meV < 15.0
    assert abs(peak_THz(spec, "H", spec.resolution_THz) * MEV_PER_THZ - 1000 * HBAR_OMEGA_EV) < 0.5 * res_meV


@pytest.mark.parametrize("propagator", ["exact", "cayley"])
def test_free_ring_polymer_propagation(propagator):
    """V = 0: the ring-polymer energy is conserved to rounding (the Cayley map is the implicit
    midpoint rule, which keeps quadratic invariants) at Δt = 1 fs and at Δt = 20 fs, where
    ω_max·Δt = 8; the centroid moves freely; a mode turns by ω_kΔt (exact) or 2·atan(ω_kΔt/2)."""

    def no_forces(s):
        return torch.zeros(s.n_replicas, dtype=s.positions.dtype), torch.zeros_like(s.positions)

    p, n = 16, 4
    for dt in (1.0, 20.0):
        state = polymer_momenta(bead_state(oscillator_atoms(n, MASS), p, 1), p, 100.0)
        integ = RingPolymerIntegrator(p, dt, 100.0, "nve", propagator=propagator)
        state = integ.init(state, no_forces)
        h0 = integ.conserved(state)
        centroid0 = state.positions.view(p, n, 3).mean(0)
        velocity = state.momenta.view(p, n, 3).mean(0) / MASS
        for _ in range(200):
            state = integ.step(state, no_forces)
        assert torch.allclose(integ.conserved(state), h0, rtol=1e-11, atol=0)
        moved = centroid0 + velocity * 200 * dt * FS
        assert torch.allclose(state.positions.view(p, n, 3).mean(0), moved, rtol=0, atol=1e-9)
    # one step of mode k = 1 from rest at unit displacement: angle of (q, p/(mω))
    w = float(integ.omega[1])
    q = torch.zeros(p, 1, 3, dtype=torch.float64)
    q[1] = 1.0
    qn, pn = integ._free(q, torch.zeros_like(q), torch.tensor([MASS], dtype=torch.float64), integ.dt)
    angle = float(torch.atan2(-pn[1, 0, 0] / (MASS * w), qn[1, 0, 0]))
    expect = w * integ.dt if propagator == "exact" else 2.0 * np.arctan(0.5 * w * integ.dt)
    assert angle == pytest.approx(expect, rel=1e-12)
