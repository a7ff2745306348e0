"""Runner and CLI: schedules, outputs readable by ASE, exact restart, config errors."""

from __future__ import annotations

import csv
import filecmp

import ase.io
import pytest
import torch
import yaml
from md_helpers import FaultInjector, argon_box, argon_cluster, lj

from legato.cli.main import main
from legato.errors import LegatoError
from legato.md import MDRunner, run_md, validate_config

torch.set_num_threads(1)


def _config(**kw):
    cfg = dict(
        structure="<ase.Atoms>",
        reference_potential=dict(kind="lennard_jones", r_max=7.0),
        replicas=3,
        steps=40,
        timestep_fs=4.0,
        temperature_K=80.0,
        seed=3,
        schedule=[
            dict(ensemble="nvt", steps=16),
            dict(ensemble="langevin", steps=8),
            dict(ensemble="nve"),
        ],
        checks=dict(every=5, temperature_window_K=None, force_sigma_eV_A=0.05),
        output=dict(thermo_every=2, trajectory_every=4, checkpoint_every=10, progress=False),
    )
    cfg.update(kw)
    return validate_config(cfg)


def _structures():
    return [argon_box(2, rattle=0.05, seed=1), argon_cluster(3)]


def _read_csv(path):
    with open(path) as fh:
        return list(csv.DictReader(fh))


def test_outputs_and_schedule(tmp_path):
    res = MDRunner(lj(7.0), _structures(), _config(), output_dir=tmp_path / "run").run()
    d = tmp_path / "run"
    thermo = _read_csv(d / "thermo.csv")
    assert [int(r["step"]) for r in thermo[::3]] == list(range(0, 41, 2))
    ens = {int(r["step"]): r["ensemble"] for r in thermo}
    assert ens[16] == "nvt" and ens[18] == "langevin" and ens[24] == "langevin" and ens[26] == "nve"
    traj = ase.io.read(d / "traj_001.extxyz", index=":")
    assert [a.info["step"] for a in traj] == list(range(0, 41, 4))
    assert len(traj[0]) == 27 and traj[-1].get_forces().shape == (27, 3)
    assert torch.allclose(
        torch.from_numpy(traj[-1].positions), res.state.positions[res.state.batch == 1], atol=1e-6
    )
    checks = _read_csv(d / "checks.csv")
    assert {int(r["step"]) for r in checks} == set(range(0, 41, 5))
    saved = yaml.safe_load((d / "resolved_config.yaml").read_text())
    assert saved["schedule"][2] == {"ensemble": "nve", "steps": None, "temperature_K": None}
    assert (d / "summary.json").exists() and (d / "checkpoint.pt").exists()
    # in NVE the conserved quantity is the total energy, and it is conserved
    nve = [r for r in thermo if r["ensemble"] == "nve" and r["replica"] == "0"]
    e = [float(r["total_eV"]) for r in nve]
    assert max(e) - min(e) < 1e-3
    with pytest.raises(LegatoError, match="not empty"):
        MDRunner(lj(7.0), _structures(), _config(), output_dir=d).run()


def test_restart_continues_the_identical_trajectory(tmp_path):
    """A run interrupted after its step-20 checkpoint and resumed = an uninterrupted run."""
    full = MDRunner(lj(7.0), _structures(), _config(), output_dir=tmp_path / "full").run()
    # the crash: the potential raises KeyboardInterrupt while computing step 27
    crashing = FaultInjector(lj(7.0), 27, "interrupt", at_call=28)
    with pytest.raises(KeyboardInterrupt):
        MDRunner(crashing, _structures(), _config(), output_dir=tmp_path / "cut").run()
    assert len(_read_csv(tmp_path / "cut" / "thermo.csv")) > 11 * 3  # rows past step 20 exist
    # the same model (the fault settings are not part of its fingerprint), now not crashing
    calm = FaultInjector(lj(7.0), 27, "interrupt", at_call=10**9)
    resumed = MDRunner(calm, _structures(), _config(), output_dir=tmp_path / "cut").run(resume=True)
    assert torch.equal(resumed.state.positions, full.state.positions)
    assert torch.equal(resumed.state.momenta, full.state.momenta)
    for name in ("thermo.csv", "checks.csv", "traj_000.extxyz", "traj_001.extxyz"):
        assert filecmp.cmp(tmp_path / "full" / name, tmp_path / "cut" / name, shallow=False), name
    # extending a finished run: 40 → 60 steps equals a 60-step run
    longer = MDRunner(calm, _structures(), _config(steps=60), output_dir=tmp_path / "cut").run(resume=True)
    direct = MDRunner(lj(7.0), _structures(), _config(steps=60), output_dir=tmp_path / "d60").run()
    assert torch.equal(longer.state.positions, direct.state.positions)
    with pytest.raises(LegatoError, match="timestep_fs"):
        MDRunner(calm, _structures(), _config(timestep_fs=2.0), output_dir=tmp_path / "cut").run(resume=True)


def test_run_md_from_atoms_in_memory():
    res = run_md(
        argon_box(2, rattle=0.05),
        lj(7.0),
        replicas=2,
        steps=10,
        timestep_fs=4.0,
        temperature_K=50.0,
        reference_potential=dict(kind="lennard_jones"),
        schedule=[dict(ensemble="nvt")],
        checks=dict(temperature_window_K=None),
    )
    assert res.state.n_replicas == 2 and res.state.step == 10 and not res.failures
    assert {r["step"] for r in res.thermo} == {0, 10}
    # different per-replica seeds: same structure, different velocities
    assert not torch.allclose(res.state.momenta[:32], res.state.momenta[32:])
    # continue from a frame of the trajectory with its own momenta
    frame = res.state.to_atoms(1, ["Ar"])
    again = run_md(
        frame,
        lj(7.0),
        steps=0,
        initial_velocities="structure",
        reference_potential=dict(kind="lennard_jones"),
    )
    assert torch.equal(again.state.momenta, res.state.momenta[32:])


def test_config_errors_name_the_nearest_key():
    with pytest.raises(LegatoError, match="did you mean 'timestep_fs'"):
        validate_config({"structure": "x", "model": "m", "timestep": 1.0})
    with pytest.raises(LegatoError, match="did you mean 'every'"):
        validate_config({"structure": "x", "model": "m", "checks": {"evry": 5}})
    with pytest.raises(LegatoError, match="did you mean 'ensemble'"):
        validate_config({"structure": "x", "model": "m", "schedule": [{"ensembl": "nve"}]})
    with pytest.raises(LegatoError, match="exactly one of"):
        validate_config({"structure": "x"})
    with pytest.raises(LegatoError, match="only the last"):
        validate_config(
            {"structure": "x", "model": "m", "schedule": [{"ensemble": "nvt"}, {"ensemble": "nve"}]}
        )


def test_cli_runs_a_config(tmp_path, capsys):
    struct = tmp_path / "ar.extxyz"
    ase.io.write(struct, argon_box(2, rattle=0.05))
    cfg = {
        "structure": str(struct),
        "reference_potential": {"kind": "lennard_jones", "r_max": 7.0},
        "replicas": 2,
        "steps": 20,
        "timestep_fs": 4.0,
        "temperature_K": 60.0,
        "schedule": [{"ensemble": "nvt", "steps": 10}, {"ensemble": "nve"}],
        "checks": {"temperature_window_K": None},
        "output": {"directory": str(tmp_path / "out"), "checkpoint_every": 10},
    }
    path = tmp_path / "md.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["md", str(path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "2 alive" in out and (tmp_path / "out" / "thermo.csv").exists()
    # a second run into the same directory is refused; --resume with more steps continues
    assert main(["md", str(path), "--no-progress"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main(["md", str(path), "--no-progress", "--resume", "--steps", "30"]) == 0
    assert max(int(r["step"]) for r in _read_csv(tmp_path / "out" / "thermo.csv")) == 30
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**cfg, "replica": 2}))
    assert main(["md", str(bad)]) == 2
    assert "did you mean 'replicas'" in capsys.readouterr().err
