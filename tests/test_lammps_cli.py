"""legato lammps plugin-path / write / run, and tfail's engine options, from the command line."""

from __future__ import annotations

from pathlib import Path

import torch
from lammps_helpers import DATA, deploy, needs_lammps

from legato.cli.main import main
from legato.lammps import read_thermo

pytestmark = needs_lammps


def test_plugin_path(capsys) -> None:
    assert main(["lammps", "plugin-path"]) == 0
    path = Path(capsys.readouterr().out.strip())
    assert path.name == "legatoplugin.so" and path.is_file()


def test_write_and_run_two_ranks(tmp_path, capsys) -> None:
    _, pth = deploy(tmp_path, torch.float64, per_species_energy_scale=[0.02, 0.02])
    out = tmp_path / "run"
    argv = ["lammps", "write", str(DATA), str(pth), "--steps", "20", "--ensemble", "nve", "--out", str(out)]
    assert main([*argv, "--timestep-fs", "0.25", "--thermo-every", "5", "--dump-every", "10"]) == 0
    assert main(["lammps", "run", str(out), "--ranks", "2"]) == 0
    assert "LAMMPS finished" in capsys.readouterr().out
    thermo = read_thermo(out / "log.lammps")[-1]
    assert list(thermo["step"]) == [0, 5, 10, 15, 20]
    assert abs(thermo["temp"][0] - 200.0) < 1e-6
    assert main(argv) == 2  # never overwrites
    assert "refusing to overwrite" in capsys.readouterr().err


def test_bad_model_and_folder(tmp_path, capsys) -> None:
    assert main(["lammps", "write", str(DATA), str(tmp_path / "none.pth"), "--out", str(tmp_path / "x")]) == 2
    assert "model file not found" in capsys.readouterr().err
    assert main(["lammps", "run", str(tmp_path / "nowhere")]) == 2
    assert "no in.lmp" in capsys.readouterr().err
    argv = ["tfail", str(tmp_path / "m.pt"), "--structure", str(DATA), "--ranks", "2", "--out", str(tmp_path)]
    _ = deploy(tmp_path, torch.float64)  # writes float64_0.pt
    (tmp_path / "float64_0.pt").rename(tmp_path / "m.pt")
    assert main(argv) == 2
    assert "--ranks applies to --engine lammps only" in capsys.readouterr().err


def test_tfail_engine_lammps(tmp_path, capsys) -> None:
    pt, _ = deploy(tmp_path, torch.float64)
    argv = ["tfail", str(pt), "--structure", str(DATA), "--sizes", "1", "--instances", "1"]
    argv += ["--nvt-steps", "20", "--max-steps", "20", "--timestep-fs", "0.5", "--out", str(tmp_path / "t")]
    assert main([*argv, "--engine", "lammps", "--ranks", "2", "--threads", "1"]) == 0
    assert "1 instances of 'float64_0'" in capsys.readouterr().out
    rows = (tmp_path / "t" / "failures.csv").read_text().splitlines()
    assert len(rows) == 2 and ",temperature,false,1,nvt,10," in rows[1]
