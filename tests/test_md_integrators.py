"""Integrators: energy conservation, thermostat conserved quantities and temperatures,
Maxwell–Boltzmann velocities, batched = one by one."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from md_helpers import argon_box, argon_cluster, argon_triclinic, lj

from legato.md.forces import ForceField
from legato.md.integrators import (
    LangevinBAOAB,
    NoseHooverChain,
    VelocityVerlet,
    maxwell_boltzmann,
)
from legato.md.state import state_from_atoms
from legato.units import KB_EV_PER_K

torch.set_num_threads(1)


def _run(integ, atoms_list, n_steps, temperature_K=100.0, seeds=None, r_max=8.0):
    ff = ForceField(lj(r_max), skin_A=1.0)
    s = state_from_atoms(atoms_list, ["Ar"], seeds=seeds)
    s = maxwell_boltzmann(s, temperature_K)
    s = integ.init(s, ff)
    h0 = integ.conserved(s)
    hs, temps, states = [], [], []
    for _ in range(n_steps):
        s = integ.step(s, ff)
        hs.append(integ.conserved(s) - h0)
        temps.append(s.temperature_K())
        states.append(s)
    return s, torch.stack(hs), torch.stack(temps), states


def _max_energy_error(integ_cls, dt, total_fs, atoms, **kw):
    _, dh, _, _ = _run(integ_cls(dt, **kw), [atoms], int(round(total_fs / dt)))
    return float(dh.abs().max()) / len(atoms)


@pytest.mark.parametrize("system", ["box", "cluster"])
def test_nve_energy_error_scales_as_dt_squared(system):
    atoms = argon_box(3, rattle=0.02) if system == "box" else argon_cluster(3)
    e4 = _max_energy_error(VelocityVerlet, 8.0, 320.0, atoms)
    e2 = _max_energy_error(VelocityVerlet, 4.0, 320.0, atoms)
    e1 = _max_energy_error(VelocityVerlet, 2.0, 320.0, atoms)
    assert e1 < 1e-4  # eV/atom: the trajectory is well resolved
    assert 3.0 < e4 / e2 < 5.0, (e4, e2)
    assert 3.0 < e2 / e1 < 5.0, (e2, e1)


def test_nve_conserves_total_momentum_and_is_time_reversible():
    atoms = argon_box(2, rattle=0.05)
    integ = VelocityVerlet(4.0)
    s_end, _, _, _ = _run(integ, [atoms], 50)
    p_tot = s_end.momenta.sum(0)
    assert float(p_tot.abs().max()) < 1e-10
    # reverse momenta and integrate back: velocity Verlet is time reversible
    ff = ForceField(lj(), skin_A=1.0)
    from dataclasses import replace

    back = replace(s_end, momenta=-s_end.momenta)
    for _ in range(50):
        back = integ.step(back, ff)
    s0 = maxwell_boltzmann(state_from_atoms([atoms], ["Ar"]), 100.0)
    assert torch.allclose(back.positions, s0.positions, atol=1e-8)


def test_nose_hoover_chain_conserved_quantity():
    atoms = argon_box(2, rattle=0.05)
    n = len(atoms)
    # start far from the target (50 K vs 150 K) so the thermostat must move energy
    integ = NoseHooverChain(4.0, 150.0, tau_fs=100.0)
    ff = ForceField(lj(), skin_A=1.0)
    s = integ.init(maxwell_boltzmann(state_from_atoms([atoms], ["Ar"]), 50.0), ff)
    h0, e0 = integ.conserved(s), s.energy + s.kinetic_energy()
    dh, de = [], []
    for _ in range(300):
        s = integ.step(s, ff)
        dh.append(float(integ.conserved(s) - h0))
        de.append(float(s.energy + s.kinetic_energy() - e0))
    exchanged = np.abs(de).max() / n
    drift = np.abs(dh).max() / n
    assert exchanged > 3e-3  # eV/atom pumped in by the bath (about 1.5 k·100 K)
    assert drift < 2e-3 * exchanged, (drift, exchanged)
    assert 100.0 < float(s.temperature_K()) < 220.0


def test_nose_hoover_chain_error_scales_as_dt_squared():
    atoms = argon_box(2, rattle=0.05)
    kw = dict(temperature_K=150.0, tau_fs=80.0)
    e8 = _max_energy_error(NoseHooverChain, 8.0, 320.0, atoms, **kw)
    e4 = _max_energy_error(NoseHooverChain, 4.0, 320.0, atoms, **kw)
    assert 3.0 < e8 / e4 < 5.0, (e8, e4)


def _mean_temperature(integ, n_rep=8, n_steps=400, discard=120):
    atoms = [argon_box(2, rattle=0.1, seed=k) for k in range(n_rep)]
    _, _, temps, _ = _run(integ, atoms, n_steps, temperature_K=integ.temperature_K, r_max=6.0)
    per_replica = temps[discard:].mean(0)  # [R] time averages, independent across replicas
    mean = float(per_replica.mean())
    sem = float(per_replica.std() / np.sqrt(n_rep))
    return mean, sem


@pytest.mark.parametrize(
    "make",
    [
        lambda: NoseHooverChain(10.0, 120.0, tau_fs=100.0),
        lambda: LangevinBAOAB(10.0, 120.0, friction_per_fs=0.005),
    ],
    ids=["nose_hoover_chain", "langevin_baoab"],
)
def test_thermostat_mean_temperature(make):
    integ = make()
    mean, sem = _mean_temperature(integ)
    print(f"mean T {mean:.2f} K ± {sem:.2f} K (target {integ.temperature_K} K)")
    assert sem < 0.03 * integ.temperature_K  # the test has statistical power
    assert abs(mean - integ.temperature_K) < 4.0 * sem + 0.01 * integ.temperature_K, (mean, sem)


def test_langevin_conserved_quantity_tracks_bath():
    atoms = argon_box(2, rattle=0.05)
    integ = LangevinBAOAB(4.0, 150.0, friction_per_fs=0.01)
    s, dh, _, states = _run(integ, [atoms], 200, temperature_K=50.0)
    bath = float(states[-1].thermostat["bath"].abs()) / len(atoms)
    assert bath > 3e-3
    assert float(dh.abs().max()) / len(atoms) < 0.02 * bath


def test_maxwell_boltzmann_per_replica():
    atoms = [argon_box(2), argon_cluster(2), argon_triclinic()]
    s = state_from_atoms(atoms, ["Ar"], seeds=[11, 12, 13])
    s = maxwell_boltzmann(s, 300.0)
    assert torch.allclose(s.temperature_K(), torch.full((3,), 300.0, dtype=torch.float64))
    tot = torch.zeros(3, 3, dtype=torch.float64).index_add_(0, s.batch, s.momenta)
    assert float(tot.abs().max()) < 1e-12
    # a replica's velocities depend on its own seed only, not on its batch neighbours
    alone = maxwell_boltzmann(state_from_atoms([atoms[1]], ["Ar"], seeds=[12]), 300.0)
    assert torch.equal(alone.momenta, s.momenta[s.batch == 1])
    other = maxwell_boltzmann(state_from_atoms([atoms[1]], ["Ar"], seeds=[99]), 300.0)
    assert not torch.allclose(other.momenta, alone.momenta)
    # unscaled draws: the kinetic energy per degree of freedom is ½kT on average
    big = state_from_atoms([argon_box(4)] * 4, ["Ar"], seeds=[1, 2, 3, 4])
    t = maxwell_boltzmann(big, 300.0, exact=False).temperature_K()
    assert abs(float(t.mean()) - 300.0) < 4 * 300.0 * np.sqrt(2.0 / (3 * 256 * 4))
    assert KB_EV_PER_K > 0


@pytest.mark.parametrize(
    "make",
    [
        lambda: VelocityVerlet(4.0),
        lambda: NoseHooverChain(4.0, 120.0, tau_fs=100.0),
        lambda: LangevinBAOAB(4.0, 120.0, friction_per_fs=0.01),
    ],
    ids=["nve", "nhc", "langevin"],
)
def test_batched_equals_one_by_one(make):
    atoms = [argon_box(2, rattle=0.05), argon_cluster(3), argon_triclinic()]
    seeds = [5, 6, 7]
    batched, _, _, _ = _run(make(), atoms, 40, seeds=seeds)
    for r, a in enumerate(atoms):
        alone, _, _, _ = _run(make(), [a], 40, seeds=[seeds[r]])
        sel = batched.batch == r
        assert torch.allclose(batched.positions[sel], alone.positions, rtol=0, atol=1e-10)
        assert torch.allclose(batched.momenta[sel], alone.momenta, rtol=0, atol=1e-10)
        assert torch.allclose(batched.energy[r : r + 1], alone.energy, rtol=0, atol=1e-10)


def test_nose_hoover_chain_blow_up_stays_in_its_replica():
    """A replica whose kinetic energy explodes must not raise overflow warnings or touch the
    other replicas: it ends non-finite and the detector reports it."""
    import warnings
    from dataclasses import replace

    from legato.md.failure import nonfinite_replicas

    atoms = [argon_box(2, rattle=0.05), argon_box(2, rattle=0.05, seed=3)]
    ff = ForceField(lj(), skin_A=1.0)
    integ = NoseHooverChain(4.0, 150.0, tau_fs=100.0)
    s = integ.init(maxwell_boltzmann(state_from_atoms(atoms, ["Ar"], seeds=[1, 2]), 150.0), ff)
    alone = integ.init(maxwell_boltzmann(state_from_atoms(atoms[1:], ["Ar"], seeds=[2]), 150.0), ff)
    sel = s.batch == 0
    s = replace(s, momenta=torch.where(sel[:, None], s.momenta * 1e160, s.momenta))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = integ._chain_half_step(s)
        ref = integ._chain_half_step(alone)
    assert torch.equal(out.momenta[~sel], ref.momenta)
    assert nonfinite_replicas(out).tolist() == [True, False]
