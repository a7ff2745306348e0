"""Always-on guards of an MD run: the runaway bound, the right reason for non-finite states,
and programming errors of a potential that stop the run instead of becoming a replica's failure."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from md_helpers import FaultInjector, argon_box, argon_cluster, lj

from legato.md import ForceField, run_md, state_from_atoms
from legato.md.failure import RUNAWAY_DRIFT_EV_PER_ATOM, FailureDetector, runaway_replicas
from legato.md.forces import is_state_failure

torch.set_num_threads(1)

NO_OPTIONAL_CHECKS = dict(every=10, temperature_window_K=None, min_distance_A=None, force_sigma_eV_A=0.05)


def _run(pot, steps: int = 40):
    return run_md(
        [argon_box(2, rattle=0.05, seed=1), argon_cluster(3)],
        pot,
        replicas=2,
        steps=steps,
        timestep_fs=4.0,
        temperature_K=60.0,
        schedule=[dict(ensemble="nve")],
        reference_potential=dict(kind="lennard_jones"),
        checks=NO_OPTIONAL_CHECKS,
    )


def test_energy_runaway_is_a_failure_with_every_optional_detector_off():
    # +2.6 MeV on the 27-atom replica from call 24 (= step 23, not a check step)
    pot = FaultInjector(lj(7.0), 27, "energy_jump", at_call=24, magnitude=2.6e6)
    res = _run(pot)
    assert [(f.replica, f.reason, f.step) for f in res.failures] == [(1, "runaway", 23)]
    assert "runaway" in res.failures[0].detail and "eV/atom" in res.failures[0].detail
    assert res.summary["alive"] == [0]
    assert res.summary["instances"][1]["reason"] == "runaway"


def test_runaway_bounds_of_the_detector():
    temp = torch.tensor([300.0, 2.0e6, 300.0, float("nan")])
    drift = torch.tensor([0.1, 0.1, 2 * RUNAWAY_DRIFT_EV_PER_ATOM, 0.1])
    assert runaway_replicas(temp, drift).tolist() == [False, True, True, False]  # NaN: 'nonfinite'
    state = state_from_atoms([argon_box(2)], ["Ar"])
    state.momenta[:] = 100.0  # about 3e6 K
    det = FailureDetector(temperature_window_K=None, min_distance_A=None)
    zero = torch.zeros(1, dtype=torch.float64)
    res = det.check(state, zero, zero, torch.full((1,), 3.0, dtype=torch.float64))
    assert res.reasons == [["runaway"]]


def test_nonfinite_positions_never_reach_the_potential():
    state = state_from_atoms([argon_box(2, rattle=0.05), argon_cluster(3)], ["Ar"])
    pot = FaultInjector(lj(7.0), 27, "nan", at_call=10**9)  # a plain LJ that records its input
    ff = ForceField(pot)
    e_ref, f_ref = ff(state)
    state.positions[40] = float("nan")  # an atom of replica 1
    energy, forces = ff(state)
    assert not pot.seen_unusable and not ff.errors
    assert torch.isnan(energy[1]) and torch.isnan(forces[32:]).all()
    assert torch.equal(energy[0], e_ref[0]) and torch.equal(forces[:32], f_ref[:32])
    state = dataclasses.replace(state, energy=energy, forces=forces)
    det = FailureDetector(temperature_window_K=None, min_distance_A=None)
    zero = torch.zeros(2, dtype=torch.float64)
    res = det.check(state, zero, zero, ff.min_distance(2), ff.errors)
    assert res.reasons == [[], ["nonfinite"]]


def test_overflowing_replica_is_a_runaway_not_a_potential_error():
    pot = FaultInjector(lj(7.0), 27, "overflow", at_call=15)
    res = _run(pot)
    assert [(f.replica, f.reason, f.step) for f in res.failures] == [(1, "runaway", 14)]
    assert not pot.seen_unusable


def test_a_bug_in_the_potential_stops_the_run():
    with pytest.raises(TypeError, match="injected bug"):
        _run(FaultInjector(lj(7.0), 27, "bug", at_call=12))


def test_a_state_failure_of_the_potential_is_recorded_for_that_replica():
    res = _run(FaultInjector(lj(7.0), 27, "raise", at_call=12))
    assert [(f.replica, f.reason, f.step) for f in res.failures] == [(1, "potential_error", 11)]
    assert "too many neighbours" in res.failures[0].detail


@pytest.mark.parametrize(
    "exc, physical",
    [
        (MemoryError(), True),
        (RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1e12 bytes"), True),
        (OverflowError("math range error"), True),
        (RuntimeError("shape '[3, -1]' is invalid for input of size 4"), False),
        (TypeError("unsupported operand"), False),
        (IndexError("index 5 is out of bounds"), False),
        (AttributeError("'NoneType' object has no attribute 'shape'"), False),
        (KeyError("forces"), False),
    ],
)
def test_which_exceptions_count_as_a_failed_state(exc, physical):
    assert is_state_failure(exc) is physical
