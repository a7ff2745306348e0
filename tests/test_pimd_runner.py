"""The PIMD engine in the batched MD machinery: one batched call for all beads (real Allegro
model), polymers independent of their batch, failures per ring polymer, exact restart,
ASE-readable outputs, and the installed ``legato pimd`` command."""

from __future__ import annotations

import filecmp
import json
import subprocess
import sys
from pathlib import Path

import ase.io
import numpy as np
import pytest
import torch
import yaml
from conftest import small_model
from md_helpers import FaultInjector, argon_box, argon_cluster, lj
from test_md_allegro import nh3_box

from legato.errors import LegatoError
from legato.md.forces import ForceField
from legato.md.state import state_from_atoms
from legato.pimd import PIMDRunner, RingPolymerIntegrator, polymer_momenta, run_pimd, validate_pimd_config

torch.set_num_threads(1)


def _beads(atoms, p: int, n_poly: int, seed: int = 0, rattle: float = 0.05):
    frames = []
    for r in range(n_poly * p):
        a = atoms.copy()
        a.rattle(rattle, seed=seed + r)
        frames.append(a)
    seeds = [100 + r // p for r in range(n_poly * p)]
    return state_from_atoms(frames, ["H", "N"], seeds=seeds, replica_ids=list(range(n_poly * p)))


def test_all_beads_in_one_call_equal_beads_one_by_one():
    """Allegro (float64) on 2 polymers × 4 beads of an NH3 box: one batched call = 8 calls."""
    model = small_model(torch.float64)
    state = _beads(nh3_box(2), 4, 2)
    ff = ForceField(model, skin_A=0.5)
    energy, forces = ff(state)
    assert ff.n_calls == 1
    for r in range(state.n_replicas):
        keep = torch.arange(state.n_replicas) == r
        e1, f1 = ForceField(model, skin_A=0.5)(state.select(keep))
        assert torch.allclose(energy[r], e1[0], rtol=0, atol=1e-10)
        assert torch.allclose(forces[state.batch == r], f1, rtol=0, atol=1e-10)
    assert not torch.allclose(forces[state.batch == 0], forces[state.batch == 1])  # beads differ


def test_a_polymer_does_not_depend_on_its_batch():
    """Two ring polymers stepped together = each stepped alone (Allegro, TRPMD after NVT)."""
    model = small_model(torch.float64)
    p = 4
    both = polymer_momenta(_beads(nh3_box(2), p, 2), p, 150.0)
    alone = [both.select(torch.arange(2 * p) // p == k) for k in range(2)]
    for ens in ("nvt", "trpmd"):
        integ = RingPolymerIntegrator(p, 0.5, 150.0, ens, centroid="pile_g")
        ff = ForceField(model, skin_A=0.5)
        both = integ.init(both, ff)
        alone = [integ.init(s, ForceField(model, skin_A=0.5)) for s in alone]
        for _ in range(4):
            both = integ.step(both, ff)
            alone = [integ.step(s, ForceField(model, skin_A=0.5)) for s in alone]
    for k in range(2):
        sel = both.batch // p == k
        assert torch.allclose(both.positions[sel], alone[k].positions, rtol=0, atol=1e-12)
        assert torch.allclose(both.momenta[sel], alone[k].momenta, rtol=0, atol=1e-12)


def _config(**kw):
    cfg = dict(
        structure="<ase.Atoms>",
        reference_potential=dict(kind="lennard_jones", r_max=7.0),
        beads=4,
        replicas=2,
        steps=20,
        timestep_fs=2.0,
        temperature_K=40.0,
        schedule=[dict(ensemble="nvt", steps=10), dict(ensemble="trpmd")],
        checks=dict(every=5, temperature_window_K=None, force_sigma_eV_A=0.05),
        estimators=dict(blocks=2),
        output=dict(checkpoint_every=10, thermo_every=2, trajectory_every=5, beads_every=10, progress=False),
    )
    cfg.update(kw)
    return validate_pimd_config(cfg)


def _structures():
    return [argon_box(2, rattle=0.05, seed=1), argon_cluster(3)]


def test_restart_continues_the_identical_trajectory(tmp_path):
    """A run killed after its step-10 checkpoint and resumed = an uninterrupted run, bitwise."""
    full = PIMDRunner(lj(7.0), _structures(), _config(), output_dir=tmp_path / "full").run()
    crashing = FaultInjector(lj(7.0), 27, "interrupt", at_call=16)
    with pytest.raises(KeyboardInterrupt):
        PIMDRunner(crashing, _structures(), _config(), output_dir=tmp_path / "cut").run()
    calm = FaultInjector(lj(7.0), 27, "interrupt", at_call=10**9)
    resumed = PIMDRunner(calm, _structures(), _config(), output_dir=tmp_path / "cut").run(resume=True)
    assert torch.equal(resumed.state.positions, full.state.positions)
    assert torch.equal(resumed.state.momenta, full.state.momenta)
    names = ["thermo.csv", "estimators.csv", "checks.csv"]
    names += [f"{kind}_{r:03d}.extxyz" for kind in ("centroid", "beads") for r in (0, 1)]
    for name in names:
        assert filecmp.cmp(tmp_path / "full" / name, tmp_path / "cut" / name, shallow=False), name
    with pytest.raises(LegatoError, match="beads"):
        PIMDRunner(calm, _structures(), _config(beads=2), output_dir=tmp_path / "cut").run(resume=True)


def test_outputs_are_ase_readable_and_consistent(tmp_path):
    res = PIMDRunner(lj(7.0), _structures(), _config(), output_dir=tmp_path).run()
    frames = ase.io.read(tmp_path / "centroid_001.extxyz", ":")
    assert [f.info["step"] for f in frames] == [0, 5, 10, 15, 20] and len(frames[0]) == 27
    beads = ase.io.read(tmp_path / "beads_001.extxyz", ":")
    assert len(beads) == 3 and len(beads[-1]) == 4 * 27
    # the centroid frame is the bead average of the final state
    sel = res.state.batch // 4 == 1
    centroid = res.state.positions[sel].view(4, 27, 3).mean(0).numpy()
    assert np.allclose(frames[-1].positions, centroid, atol=1e-6)
    assert np.allclose(beads[-1].positions, res.state.positions[sel].numpy(), atol=1e-6)
    assert np.allclose(
        frames[-1].get_velocities(), res.state.velocities()[sel].view(4, 27, 3).mean(0), atol=1e-6
    )
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["beads"] == 4 and summary["alive"] == [0, 1]
    est = summary["estimators"]
    assert est["skip_steps"] == 10 and est["polymer"]["samples"] == 5
    assert set(est["species"]) == {"Ar"}
    assert est["species"]["Ar"]["rg_A"]["mean"] > 0
    cfg = yaml.safe_load((tmp_path / "resolved_config.yaml").read_text())
    assert cfg["beads"] == 4 and cfg["propagator"] == "cayley"


def test_a_failing_ring_polymer_leaves_with_all_its_beads():
    """NaN forces on one bead of polymer 1 (the 27-atom cluster): it fails, polymer 0 goes on."""
    bad = FaultInjector(lj(7.0), 27, "nan", at_call=8)
    res = run_pimd(_structures(), bad, _config(), reference_potential=None)
    assert [f.replica for f in res.failures] == [1]
    assert res.failures[0].reason == "nonfinite" and res.failures[0].last_good is not None
    assert len(res.failures[0].last_good) == 27  # the last good centroid
    assert res.state.n_replicas == 4 and res.state.step == 20


def test_masses_from_the_structure_or_the_config():
    """ND3 vs NH3 by mass: deuterium from the structure; masses_amu overrides per element."""
    atoms = nh3_box(1)
    atoms.set_masses([2.014 if s == "H" else 14.007 for s in atoms.get_chemical_symbols()])
    kw = dict(
        beads=2,
        steps=2,
        schedule=[dict(ensemble="nvt")],
        checks=dict(temperature_window_K=None),
        estimators=dict(blocks=2),
        output=dict(thermo_every=1),
    )
    nd3 = run_pimd(atoms, small_model(torch.float64), **kw)
    assert nd3.summary["masses_amu"] == {"H": [2.014], "N": [14.007]}
    assert set(nd3.summary["estimators"]["species"]) == {"D", "N"}  # labelled by isotope
    nh3 = run_pimd(atoms, small_model(torch.float64), masses_amu={"H": 1.008}, **kw)
    assert nh3.summary["masses_amu"]["H"] == [1.008]
    assert set(nh3.summary["estimators"]["species"]) == {"H", "N"}
    with pytest.raises(LegatoError, match="not in the structure"):
        run_pimd(atoms, small_model(torch.float64), masses_amu={"O": 16.0}, **kw)


def test_config_errors():
    with pytest.raises(LegatoError, match="did you mean 'beads'"):
        validate_pimd_config({"structure": "x", "model": "m", "bead": 4})
    with pytest.raises(LegatoError, match="ensemble"):
        validate_pimd_config({"structure": "x", "model": "m", "schedule": [{"ensemble": "langevin"}]})
    with pytest.raises(LegatoError, match="beads_every"):
        validate_pimd_config({"structure": "x", "model": "m", "output": {"beads_every": 3}})


def _script() -> str:
    path = Path(sys.executable).parent / "legato"
    return str(path) if path.exists() else "legato"


def test_installed_cli_runs_a_tiny_config(tmp_path):
    ase.io.write(tmp_path / "ar.extxyz", argon_cluster(2))
    cfg = {
        "structure": "ar.extxyz",
        "reference_potential": {"kind": "lennard_jones", "r_max": 7.0},
        "beads": 4,
        "replicas": 2,
        "steps": 12,
        "timestep_fs": 2.0,
        "temperature_K": 40.0,
        "schedule": [{"ensemble": "nvt", "steps": 6}, {"ensemble": "trpmd"}],
        "checks": {"temperature_window_K": None},
        "estimators": {"blocks": 2},
        "output": {"directory": "out", "thermo_every": 2, "trajectory_every": 2},
    }
    (tmp_path / "pimd.yaml").write_text(yaml.safe_dump(cfg))
    env = {"OMP_NUM_THREADS": "1", "PATH": str(Path(sys.executable).parent), "LEGATO_COMPILE": "0"}

    def legato(*extra: str) -> subprocess.CompletedProcess:
        cmd = [_script(), "pimd", "pimd.yaml", "--no-progress", *extra]
        return subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env)

    res = legato("--threads", "1")
    assert res.returncode == 0, res.stderr
    assert "2 ring polymers x 4 beads" in res.stdout and "K_cv" in res.stdout
    assert len(ase.io.read(tmp_path / "out" / "centroid_000.extxyz", ":")) == 7
    again = legato()
    assert again.returncode == 2 and again.stderr.startswith("error: ") and "--resume" in again.stderr
    assert "Traceback" not in again.stderr
