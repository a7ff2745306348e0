"""Each failure detector fires on an injected fault; the failed replica leaves the batch with
its step, reason and last good frame, and the other replicas run to the end."""

from __future__ import annotations

import pytest
import torch
from md_helpers import FaultInjector, argon_box, argon_cluster, lj

from legato.md import run_md

torch.set_num_threads(1)

STEPS = 60


def _structures():
    # sizes 32, 27, 8 identify the replicas inside the batched graph
    return [argon_box(2, rattle=0.05, seed=1), argon_cluster(3), argon_cluster(2, seed=2)]


def _run(pot, **checks):
    base = dict(every=10, temperature_window_K=None, min_distance_A=None)
    base.update(checks)
    return run_md(
        _structures(),
        pot,
        replicas=3,
        steps=STEPS,
        timestep_fs=4.0,
        temperature_K=60.0,
        schedule=[dict(ensemble="nvt", steps=20), dict(ensemble="nve")],
        reference_potential=dict(kind="lennard_jones"),
        checks=base,
    )


@pytest.mark.parametrize(
    "kind, checks, reason, at_call, first_step, last_step",
    [
        # NaN forces: caught by the every-step guard at the very step
        ("nan", {}, "nonfinite", 26, 25, 25),
        # one atom with a 1000 eV/Å force at a check step (call k+1 gives step k's forces)
        ("huge", {"max_force_outliers": 0, "force_sigma_eV_A": 0.05}, "force_outliers", 41, 40, 40),
        # atoms 0 and 1 pulled together: the closest pair falls below 2.6 Å
        ("pull", {"min_distance_A": 2.6}, "min_distance", 22, 30, 60),
        # the same pull seen by the element-pair limit (the local, per-molecule detector)
        ("pull", {"min_pair_distance_A": {"Ar-Ar": 2.6}}, "pair_distance", 22, 30, 60),
        # random force kicks heat the replica: temperature leaves [10 K, 200 K]
        ("kick", {"temperature_window_K": [10.0, 200.0]}, "temperature", 22, 30, 60),
        # the energy jumps by 1 eV: the conserved quantity drifts
        ("energy_jump", {"max_drift_eV_per_atom": 0.01}, "drift", 44, 50, 50),
        # the potential raises for that replica only: evaluated alone, it fails
        ("raise", {}, "potential_error", 31, 30, 30),
        # forces of 1e308 eV/Å: the temperature overflows, the always-on bound fires at once
        ("overflow", {}, "runaway", 33, 32, 32),
    ],
)
def test_detector_fires_and_others_continue(kind, checks, reason, at_call, first_step, last_step):
    kw = {
        "pull": dict(magnitude=20.0),
        "kick": dict(magnitude=3.0, duration=5),
        "huge": dict(duration=1),
    }.get(kind, {})
    pot = FaultInjector(lj(7.0), 27, kind, at_call=at_call, **kw)
    res = _run(pot, **checks)
    assert [f.replica for f in res.failures] == [1], res.failures
    f = res.failures[0]
    assert f.reason == reason, f
    assert first_step <= f.step <= last_step
    assert f.stage == (0 if f.step <= 20 else 1) and f.steps_in_stage == f.step - (0 if f.stage == 0 else 20)
    assert f.last_good_step == 10 * ((f.step - 1) // 10)
    assert f.last_good is not None and len(f.last_good) == 27
    assert f.last_good.info["step"] == f.last_good_step
    inst = {row["replica"]: row for row in res.summary["instances"]}
    assert inst[1]["censored"] is False and inst[1]["t_failure_steps"] == f.steps_in_stage
    assert inst[0]["censored"] and inst[2]["censored"]
    assert inst[0]["t_failure_steps"] == STEPS - 20 and inst[0]["ensemble"] == "nve"
    # the others ran to the end, and their trajectories are not affected by the fault
    assert res.state.replica_ids.tolist() == [0, 2] and res.state.step == STEPS
    clean = _run(lj(7.0), **checks)
    assert not clean.failures
    keep = torch.tensor([True, False, True])
    assert torch.allclose(res.state.positions, clean.state.select(keep).positions, rtol=0, atol=1e-10)


def test_force_outliers_recorded_at_every_check():
    pot = FaultInjector(lj(7.0), 27, "huge", at_call=41, duration=1)
    res = _run(pot, force_sigma_eV_A=0.05)  # counted, not a failure criterion
    assert not res.failures
    steps = list(range(0, STEPS + 1, 10))
    for rid in range(3):
        rows = [r for r in res.checks if r["replica"] == rid]
        assert [r["step"] for r in rows] == steps
        expected = [1 if (rid == 1 and st == 40) else 0 for st in steps]
        assert [r["n_force_outliers"] for r in rows] == expected


def test_temperature_rule_of_the_public_code():
    """Default window [T/2, 3T/2]: [100 K, 300 K] at 200 K; σ from the initial forces."""
    res = run_md(
        [argon_box(2, rattle=0.05, seed=k) for k in range(3)],
        lj(7.0),
        replicas=3,
        steps=40,
        timestep_fs=4.0,
        temperature_K=200.0,
        reference_potential=dict(kind="lennard_jones"),
        schedule=[dict(ensemble="nve")],
    )
    assert res.summary["force_sigma_source"] == "initial forces"
    assert res.summary["force_sigma_eV_A"] > 0
    # fcc started at 200 K gives about half its kinetic energy to the potential: T ≈ 100 K,
    # so some replicas cross the lower bound
    for row in res.checks:
        inside = 100.0 <= row["temperature_K"] <= 300.0
        assert row["status"] == ("ok" if inside else "temperature")
    failed = {f.replica: f.step for f in res.failures}
    assert failed  # the rule did fire in this set-up
    for rid, step in failed.items():
        assert max(r["step"] for r in res.checks if r["replica"] == rid) == step


@pytest.mark.parametrize(
    "pairs, message",
    [({"HH": 1.0}, "two element symbols"), ({"H-Xx": 1.0}, "two element symbols"), ({"H-H": 0.0}, "> 0")],
)
def test_pair_distance_limits_are_validated(pairs, message):
    from legato.md.config import ChecksConfig

    with pytest.raises(ValueError, match=message):
        ChecksConfig(min_pair_distance_A=pairs)


def test_pair_distance_of_an_element_the_model_lacks_is_one_error():
    from legato.errors import LegatoError

    with pytest.raises(LegatoError, match="min_pair_distance_A: H-H"):
        _run(lj(7.0), min_pair_distance_A={"H-H": 1.0})
