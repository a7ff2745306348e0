"""Resuming an MD run: the model must be the one it started with; a run stopped before its
first checkpoint is moved aside; the output folder is checked before any MD work."""

from __future__ import annotations

import ase.io
import pytest
import torch
import yaml
from md_helpers import FaultInjector, argon_box, argon_cluster, lj
from test_md_allegro import nh3_box, small_allegro

from legato.cli.main import main
from legato.errors import LegatoError
from legato.md import MDRunner, validate_config
from legato.md.potentials import LennardJones
from legato.models import save_model

torch.set_num_threads(1)


def _config(**kw):
    cfg = dict(
        structure="<ase.Atoms>",
        reference_potential=dict(kind="lennard_jones", r_max=7.0),
        replicas=2,
        steps=20,
        timestep_fs=4.0,
        temperature_K=60.0,
        schedule=[dict(ensemble="nvt", steps=10), dict(ensemble="nve")],
        checks=dict(every=5, temperature_window_K=None, force_sigma_eV_A=0.05),
        output=dict(checkpoint_every=10, progress=False),
    )
    cfg.update(kw)
    return validate_config(cfg)


def _structures():
    return [argon_box(2, rattle=0.05, seed=1), argon_cluster(3)]


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [x for x in err.strip().splitlines() if x]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def test_resume_with_another_model_is_refused(tmp_path):
    out = tmp_path / "run"
    MDRunner(lj(7.0), _structures(), _config(), output_dir=out).run()
    other = LennardJones(epsilon_eV=0.0104, sigma_A=3.30, r_max=7.0)
    with pytest.raises(LegatoError, match=r"model differs .* \(weights or settings\)"):
        MDRunner(other, _structures(), _config(steps=30), output_dir=out).run(resume=True)
    with pytest.raises(LegatoError, match=r"model differs .* \(weights or settings, dtype\)"):
        MDRunner(lj(7.0).float(), _structures(), _config(steps=30), output_dir=out).run(resume=True)
    res = MDRunner(lj(7.0), _structures(), _config(steps=30), output_dir=out).run(resume=True)
    assert res.state.step == 30


def test_checkpoint_without_fingerprint_resumes_with_a_warning(tmp_path):
    out = tmp_path / "run"
    MDRunner(lj(7.0), _structures(), _config(), output_dir=out).run()
    blob = torch.load(out / "checkpoint.pt", weights_only=False)
    del blob["model"]  # as written by legato before fingerprints
    torch.save(blob, out / "checkpoint.pt")
    said: list[str] = []
    res = MDRunner(lj(7.0), _structures(), _config(steps=30), output_dir=out, log=said.append).run(
        resume=True
    )
    assert res.state.step == 30
    assert len(said) == 1 and said[0].startswith("warning:") and "no model fingerprint" in said[0]


def test_cli_resume_with_a_replaced_model_file(tmp_path, capsys):
    save_model(small_allegro(seed=0), tmp_path / "model.pt")
    ase.io.write(tmp_path / "nh3.extxyz", nh3_box())
    cfg = {
        "structure": "nh3.extxyz",
        "model": "model.pt",
        "steps": 4,
        "timestep_fs": 0.5,
        "temperature_K": 100.0,
        "schedule": [{"ensemble": "nvt", "steps": 2}, {"ensemble": "nve"}],
        "checks": {"every": 2},
        "output": {"directory": str(tmp_path / "run"), "progress": False},
    }
    (tmp_path / "md.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["md", str(tmp_path / "md.yaml")]) == 0
    save_model(small_allegro(seed=1), tmp_path / "model.pt")  # another model, same path
    capsys.readouterr()
    assert main(["md", str(tmp_path / "md.yaml"), "--resume", "--steps", "6"]) == 2
    line = _one_error_line(capsys)
    assert "model differs from the one" in line and "(weights or settings)" in line


def test_run_stopped_before_its_first_checkpoint_is_moved_aside(tmp_path):
    out = tmp_path / "run"
    crashing = FaultInjector(lj(7.0), 27, "interrupt", at_call=5)
    with pytest.raises(KeyboardInterrupt):
        MDRunner(crashing, _structures(), _config(), output_dir=out).run()
    assert (out / "resolved_config.yaml").exists() and not (out / "checkpoint.pt").exists()
    said: list[str] = []
    res = MDRunner(lj(7.0), _structures(), _config(), output_dir=out, log=said.append).run()
    assert res.state.step == 20 and (out / "checkpoint.pt").exists()
    assert (tmp_path / "run.incomplete1" / "thermo.csv").exists()
    assert said == [
        f"{out} holds an MD run stopped before its first checkpoint: moved it to {out}.incomplete1"
    ]
    # --resume of such a folder starts anew as well (there is nothing to resume)
    with pytest.raises(KeyboardInterrupt):
        MDRunner(crashing, _structures(), _config(), output_dir=tmp_path / "b").run()
    res = MDRunner(lj(7.0), _structures(), _config(), output_dir=tmp_path / "b", log=said.append).run(
        resume=True
    )
    assert res.state.step == 20 and (tmp_path / "b.incomplete1").is_dir()


def test_other_files_in_the_folder_are_not_moved(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(LegatoError, match="is not empty"):
        MDRunner(lj(7.0), _structures(), _config(), output_dir=out).run()
    with pytest.raises(LegatoError, match="no checkpoint to resume from"):
        MDRunner(lj(7.0), _structures(), _config(), output_dir=out).run(resume=True)
    assert (out / "notes.txt").read_text() == "mine" and not (tmp_path / "run.incomplete1").exists()


def test_cli_read_only_output_folder_fails_before_md(tmp_path, capsys, readonly_dir):
    ase.io.write(tmp_path / "ar.extxyz", argon_box(2))
    cfg = {
        "structure": str(tmp_path / "ar.extxyz"),
        "reference_potential": {"kind": "lennard_jones", "r_max": 7.0},
        "steps": 10,
        "temperature_K": 60.0,
        "output": {"directory": str(readonly_dir / "run"), "progress": False},
    }
    (tmp_path / "md.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["md", str(tmp_path / "md.yaml")]) == 2
    assert "cannot write to MD output folder" in _one_error_line(capsys)
