"""The study pipeline end to end at a tiny size (train → ρ grid → tfail → fits → errors →
sharpness → landscape → report), its resumability and refusal to overwrite, the config
schema, and the demo command."""

from __future__ import annotations

import json
from pathlib import Path

import ase.io
import pytest
import torch
import yaml
from ase.calculators.lj import LennardJones
from ase.calculators.singlepoint import SinglePointCalculator

from legato.cli.main import main
from legato.data.liquid import build_liquid
from legato.errors import LegatoError
from legato.stats.failures import format_failure_table, read_failure_table
from legato.workflows.study import STAGES, run_study
from legato.workflows.study_config import load_study_config, validate_study_config

torch.set_num_threads(1)
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def tiny_nh3_data(path: Path, n_frames: int = 24) -> Path:
    """2-molecule ND3 boxes (8 atoms) labelled with a soft Lennard-Jones potential: smooth,
    small forces, milliseconds per frame."""
    frames = []
    for k in range(n_frames):
        a = build_liquid("NH3", 2, density_g_cm3=0.7982, seed=k, deuterium=True, min_distance_A=1.5)
        a.rattle(0.02, seed=k)
        a.calc = LennardJones(sigma=0.8, epsilon=0.01, rc=3.0, smooth=True)
        e, f = a.get_potential_energy(), a.get_forces()
        a.calc = SinglePointCalculator(a, energy=e, forces=f)
        a.info.update(source="md", temperature_K=200.0)
        frames.append(a)
    ase.io.write(path, frames, format="extxyz")
    return path


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    return tiny_nh3_data(tmp_path_factory.mktemp("nh3") / "nh3_tiny.extxyz")


def tiny_config(data: Path) -> dict:
    cfg = yaml.safe_load((CONFIGS / "study_tiny.yaml").read_text())
    cfg["data"] = str(data)
    return cfg


def test_shipped_configs_validate_and_unknown_keys_are_named():
    for name in ("study.yaml", "study_tiny.yaml"):
        cfg = load_study_config(CONFIGS / name)
        assert cfg.rho_grid and cfg.tfail.instances >= 1
    full = load_study_config(CONFIGS / "study.yaml")
    from legato.workflows.tfail import parse_sizes

    n = [a * b * c for a, b, c in parse_sizes(full.tfail.sizes)]
    assert len(n) >= 4 and max(n) / min(n) >= 27 and full.tfail.instances >= 10
    assert len(full.rho_grid) >= 4
    base = yaml.safe_load((CONFIGS / "study_tiny.yaml").read_text())
    with pytest.raises(LegatoError, match="did you mean 'instances'"):
        validate_study_config({**base, "tfail": {**base["tfail"], "instance": 3}})
    with pytest.raises(LegatoError, match="unknown key 'rho_gird'.*rho_grid"):
        validate_study_config({**base, "rho_gird": [0.1]})
    with pytest.raises(LegatoError, match="model.r_mx"):  # checked by legato.train's schema
        validate_study_config({**base, "train": {**base["train"], "model": {"r_mx": 3.0}}})
    with pytest.raises(LegatoError, match="sizes"):
        validate_study_config({**base, "tfail": {**base["tfail"], "sizes": [1, "2x2"]}})


def test_tiny_study_end_to_end_resumes_and_refuses_to_overwrite(tiny_data, tmp_path):
    cfg = tiny_config(tiny_data)
    cfg["rho_grid"] = [0.05]  # one SAM model keeps the test short
    out = tmp_path / "study"
    # stop after the rho stage (as a cut-off run would), then continue
    study = run_study(cfg, out, stages=("data", "train", "rho"), log=lambda s: None)
    assert study.done("rho") and not study.done("tfail")
    base_table = read_failure_table(out / "tfail" / "allegro" / "size_1" / "failures.csv")
    study = run_study(cfg, out, resume=True, log=lambda s: None)
    assert all(study.done(s) for s in STAGES)
    for name in (
        "results.md",
        "results.json",
        "table1_rho.csv",
        "table1_rho.md",
        "table1_rho.png",
        "force_errors.csv",
        "sharpness.csv",
        "landscape.png",
        "scaling/fig2_scaling.png",
        "scaling/survival.png",
        "scaling/fig1_outliers.png",
        "scaling/scaling_fits.json",
        "models/allegro/best_model.pt",
        "models/legato_rho0.05/best_model.pt",
    ):
        assert (out / name).is_file(), name
    # the base-size ensemble of the rho stage was reused by the tfail stage, not rerun
    runs = (out / "tfail" / "allegro" / "size_1" / "runs.jsonl").read_text().splitlines()
    assert len(runs) == 1
    results = json.loads((out / "results.json").read_text())  # strict JSON (no NaN)
    assert set(STAGES) - {"report"} <= set(results)  # written by the report stage itself
    assert results["rho"]["result"]["legato_rho"] == 0.05
    # failure tables: both models, every size, every instance; they round-trip byte for byte
    table = read_failure_table(out / "scaling" / "failures_all.csv")
    assert table.models() == ["Allegro", "Legato rho=0.05"]
    assert table.sizes() == [8, 16] and len(table) == 2 * 2 * 3
    assert [r for r in table if r.model == "Allegro" and r.n_atoms == 8] == list(base_table)
    for p in out.glob("tfail/*/*/failures.csv"):
        assert format_failure_table(read_failure_table(p)) == p.read_text()
    md = (out / "results.md").read_text()
    for heading in ("Table 1", "Fig. 2", "Test-set errors", "Sharpness", "What holds"):
        assert heading in md
    row = results["errors"]["result"]["rows"][0]
    assert row["forces_rmse_meV_A_lo"] <= row["forces_rmse_meV_A"] <= row["forces_rmse_meV_A_hi"]

    # the same folder again: refused without resume; with resume nothing is redone
    with pytest.raises(LegatoError, match="--resume"):
        run_study(cfg, out, log=lambda s: None)
    stamp = (out / "models" / "allegro" / "best_model.pt").stat().st_mtime_ns
    lines: list[str] = []
    run_study(cfg, out, resume=True, log=lines.append)
    assert lines and all("skipped" in line for line in lines)
    assert (out / "models" / "allegro" / "best_model.pt").stat().st_mtime_ns == stamp
    # a changed config is not mixed into an existing study
    with pytest.raises(LegatoError, match="differs"):
        run_study({**cfg, "tfail": {**cfg["tfail"], "max_steps": 31}}, out, resume=True, log=lambda s: None)


def test_demo_quick_runs_and_refuses_to_overwrite(tiny_data, tmp_path, capsys):
    out = tmp_path / "demo"
    argv = ["demo", "--out", str(out), "--data", str(tiny_data), "--quick", "--workers", "1"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "time to failure" in text and "Allegro" in text and "Legato rho=0.005" in text
    assert (out / "scaling" / "survival.png").is_file() and (out / "results.md").is_file()
    assert main(argv) == 2
    assert "--resume" in capsys.readouterr().err
    assert main([*argv, "--resume"]) == 0
    assert main(["demo", "--out", str(tmp_path / "x"), "--data", str(tmp_path / "none.xyz")]) == 2


def test_rho_search_cli_writes_table1(tiny_data, tmp_path, capsys):
    cfg = tiny_config(tiny_data)
    for section in ("sharpness", "landscape", "errors"):
        cfg[section] = {"enabled": False}
    conf = tmp_path / "study.yaml"
    conf.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "rho"
    assert main(["rho-search", str(conf), "--rho", "0.1", "--out", str(out)]) == 0
    rows = (out / "table1_rho.csv").read_text().splitlines()
    assert rows[0].startswith("rho,label,n_atoms") and len(rows) == 2
    assert (out / "table1_rho.png").is_file()
    assert not (out / "models" / "allegro").exists()  # the grid only
    text = capsys.readouterr().out
    assert "| 0.1 | Legato rho=0.1 |" in text
    assert [p.parts[-3] for p in out.glob("tfail/*/size_1/failures.csv")] == ["legato_rho0.1"]


def test_data_stage_holds_out_test_frames_and_filters_training_frames(tiny_data, tmp_path):
    cfg = tiny_config(tiny_data)
    study = run_study(cfg, tmp_path / "a", stages=("data",), log=lambda s: None)
    info = study.result("data")
    assert (info["train_val"], info["test"]) == (18, 6) and info["base_n_atoms"] == 8
    test = ase.io.read(tmp_path / "a" / "data" / "test.extxyz", ":")
    train = ase.io.read(tmp_path / "a" / "data" / "train_val.extxyz", ":")
    seen = {tuple(a.positions.ravel().round(6)) for a in train}
    assert not any(tuple(a.positions.ravel().round(6)) in seen for a in test)
    cfg["train_frames"] = {"temperature_K": [300]}
    with pytest.raises(LegatoError, match="no training frames"):
        run_study(cfg, tmp_path / "b", stages=("data",), log=lambda s: None)
