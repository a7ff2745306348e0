"""Study v2 end to end at a tiny size: seeds × arms, control selection, paired runs,
hierarchical report; its config schema and the installed command."""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import pytest
import torch
import yaml
from test_study import tiny_nh3_data

from legato.errors import LegatoError
from legato.workflows.study_v2 import StudyV2, pick_epochs
from legato.workflows.study_v2_config import ARMS, load_study_v2_config
from legato.workflows.study_v2_report import RUN_COLUMNS, split_label

torch.set_num_threads(1)
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    return tiny_nh3_data(tmp_path_factory.mktemp("nh3v2") / "nh3_tiny.extxyz")


def _config(tmp_path: Path, data: Path, **over) -> Path:
    cfg = yaml.safe_load((CONFIGS / "study_v2_tiny.yaml").read_text())
    cfg["data"] = str(data)
    cfg.update(over)
    path = tmp_path / "study_v2.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_pick_epochs_defines_the_adam_arms():
    log = [
        {"epoch": 1, "val_loss": 5.0, "val_forces_rmse_meV_A": 300.0},
        {"epoch": 2, "val_loss": 3.0, "val_forces_rmse_meV_A": 200.0},
        {"epoch": 3, "val_loss": 3.5, "val_forces_rmse_meV_A": 210.0},
        {"epoch": 4, "val_loss": 1.0, "val_forces_rmse_meV_A": 100.0},
    ]
    assert pick_epochs(log, 2, 290.0) == {"allegro": 2, "allegro_2x": 4, "allegro_matched": 1}
    assert pick_epochs(log, 3, 120.0)["allegro_matched"] == 4
    assert split_label("allegro_2x_s3") == ("allegro_2x", 3)
    with pytest.raises(LegatoError):
        split_label("other_s1")


def test_config_schema(tiny_data, tmp_path):
    cfg = load_study_v2_config(_config(tmp_path, tiny_data))
    assert cfg.sizes_of("allegro_2x") == [(1, 1, 1)] and len(cfg.sizes_of("legato")) == 2
    for name in ("study_v2.yaml", "study_v2_paper_model.yaml"):
        assert load_study_v2_config(CONFIGS / name).version == 2
    # the variants reuse tier 1's trained models (through ``base``): everything upstream of MD matches
    tier1 = load_study_v2_config(CONFIGS / "study_v2.yaml")
    nvt, dt24, t1, t4 = (
        load_study_v2_config(CONFIGS / f"study_v2_{n}.yaml") for n in ("nvt_only", "dt24", "table1", "table4")
    )
    for variant in (nvt, dt24, t1, t4):
        for key in ("data", "data_index", "split_seed", "train_frames", "train", "rho", "epochs"):
            assert getattr(variant, key) == getattr(tier1, key), key
        assert set(variant.seeds) <= set(tier1.seeds)
    assert nvt.tfail.production == "nvt" and tier1.tfail.production == "nve"
    assert dt24.tfail.timestep_fs == 2.4 and dt24.tfail.production == "nve"
    # Tables 1 and 4 at the 2.4-fs protocol, at its base size: the paper's six rho, l_max 0, 1, 2
    for grid in (t1, t4):
        assert grid.tfail.protocol((1, 1, 1)) == dt24.tfail.protocol((1, 1, 1))
        assert grid.tfail.sizes == [1] and grid.tfail.instances == dt24.tfail.instances
    assert sorted([t1.rho, *t1.rho_grid.rhos]) == [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05]
    assert t1.grid_seeds("rho_grid") == t1.seeds and not t1.lmax_grid.l_max
    assert sorted([t4.base_lmax(), *t4.lmax_grid.l_max]) == [0, 1, 2] and not t4.rho_grid.rhos
    assert t4.grid_seeds("lmax_grid") == t4.seeds
    from legato.train.config import parse_config

    for lmax in (0, 2):
        train = parse_config(yaml.safe_load((CONFIGS / f"table4_lmax{lmax}.yaml").read_text()), "table4")
        assert train.model["l_max"] == lmax
    with pytest.raises(LegatoError, match="arm_sizes"):
        load_study_v2_config(_config(tmp_path, tiny_data, arm_sizes={"adam": [1]}))
    no_md = load_study_v2_config(_config(tmp_path, tiny_data, arm_sizes={"allegro_2x": []}))
    assert no_md.sizes_of("allegro_2x") == [] and len(no_md.sizes_of("allegro_matched")) == 2
    with pytest.raises(LegatoError, match="seeds"):
        load_study_v2_config(_config(tmp_path, tiny_data, seeds=[1, 1]))
    with pytest.raises(LegatoError, match="Legato arm's rho"):
        load_study_v2_config(_config(tmp_path, tiny_data, rho_grid={"rhos": [0.05]}))
    with pytest.raises(LegatoError, match="some of the study's seeds"):
        load_study_v2_config(_config(tmp_path, tiny_data, rho_grid={"rhos": [0.01], "seeds": [3]}))
    with pytest.raises(LegatoError, match="arms' own l_max"):
        load_study_v2_config(_config(tmp_path, tiny_data, lmax_grid={"l_max": [1]}))
    grid = load_study_v2_config(
        _config(
            tmp_path, tiny_data, rho_grid={"rhos": [0.1, 0.01]}, lmax_grid={"l_max": [2, 0], "seeds": [2]}
        )
    )
    assert grid.arms()[4:] == ["legato_rho0.01", "legato_rho0.1", "allegro_lmax0", "allegro_lmax2"]
    assert grid.seeds_of("legato_rho0.1") == [1] and grid.seeds_of("allegro_lmax2") == [2]
    assert grid.sizes_of("legato_rho0.1") == grid.sizes_of("allegro_lmax0") == [(1, 1, 1)]
    with pytest.raises(LegatoError, match="did you mean 'epochs'"):
        load_study_v2_config(_config(tmp_path, tiny_data, epoch=3))


def test_tiny_study_v2_end_to_end(tiny_data, tmp_path):
    path = _config(tmp_path, tiny_data, sharpness={"samples": 3, "max_frames": 2, "pga_steps": 2})
    out = tmp_path / "study"
    cfg = load_study_v2_config(path)
    study = StudyV2(cfg, out, log=lambda s: None)
    study.run(("data", "train", "select"))
    with open(out / "models.csv", newline="") as fh:
        models = list(csv.DictReader(fh))
    assert {(m["model"], int(m["model_seed"])) for m in models} == {(a, s) for a in ARMS for s in (1, 2)}
    for m in models:  # SAM: twice the gradient evaluations per epoch; Adam 2x: up to 2x epochs
        assert int(m["gradient_evaluations_epochs"]) == int(m["epoch"]) * (2 if m["model"] == "legato" else 1)
        assert int(m["epoch"]) <= (2 if m["model"] in ("legato", "allegro") else 4)
        assert (out / "models" / f"{m['model']}_s{m['model_seed']}.pt").is_file()
    # before the MD stages start, their sections may still change (the saved config follows);
    # training's may not
    cfg2 = yaml.safe_load(path.read_text())
    cfg2["tfail"]["timestep_fs"] = 1.9
    path.write_text(yaml.safe_dump(cfg2))
    study = StudyV2(load_study_v2_config(path), out, resume=True, log=lambda s: None)
    assert yaml.safe_load((out / "study_config.yaml").read_text())["tfail"]["timestep_fs"] == 1.9
    bad = {**cfg2, "epochs": 3}
    with pytest.raises(LegatoError, match="sections: epochs"):
        StudyV2(load_study_v2_config(path, data=bad), out, resume=True, log=lambda s: None)
    study.run()
    # a study saved before a section existed resumes: the section's defaults are no change
    saved = yaml.safe_load((out / "study_config.yaml").read_text())
    del saved["rho_grid"]
    (out / "study_config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
    assert not StudyV2(load_study_v2_config(path), out, resume=True, log=lambda s: None).reopened
    cfg2["tfail"]["timestep_fs"] = 2.0
    with pytest.raises(LegatoError, match="sections: tfail"):
        StudyV2(load_study_v2_config(path, data=cfg2), out, resume=True, log=lambda s: None)
    with open(out / "runs.csv", newline="") as fh:
        runs = list(csv.DictReader(fh))
    assert tuple(runs[0]) == RUN_COLUMNS
    # 2 seeds × (2 arms × 2 sizes + 2 controls × 1 size) × 3 instances
    assert len(runs) == 2 * (2 * 2 + 2) * 3
    base = [r for r in runs if r["n_atoms"] == "8"]
    seeds_by_model = {(r["model"], r["model_seed"]) for r in base}
    assert len(seeds_by_model) == 8 and {r["instance_seed"] for r in base} == {"0", "1", "2"}
    res = json.loads((out / "results.json").read_text())
    prod = res["stats"]["production"]
    assert {e["model"] for e in prod["per_size"]} == set(ARMS)
    assert any("paired" in c for c in prod["comparisons"])
    assert set(prod["beta"]) == {"allegro", "legato"} and prod["beta_tests"]
    assert (
        all("weibull" in prod["beta"][a] for a in ("allegro", "legato"))
        and "weibull" in prod["beta_tests"][0]
    )
    with open(out / "sharpness.csv", newline="") as fh:
        sharp = list(csv.DictReader(fh))
    assert all(float(r["worst_case_value"]) >= float(r["value"]) - 1e-12 for r in sharp)
    # per-model measures: every arm's mean, Legato against the three Adam arms paired by seed
    measures = {m["measure"]: m for m in res["per_model"]}
    assert set(measures) == {"val_forces_rmse_meV_A", "forces_rmse_meV_A", "value", "worst_case_value"}
    wc = measures["worst_case_value"]
    assert set(wc["arms"]) == set(ARMS) and {c["other"] for c in wc["legato_vs"]} == set(ARMS) - {"legato"}
    assert wc["arms"]["legato"]["values"] == {
        r["model_seed"]: pytest.approx(float(r["worst_case_value"])) for r in sharp if r["model"] == "legato"
    }
    assert "Per-model measures" in (out / "results.md").read_text()
    surv = wc["vs_survival"]
    assert surv["n_atoms"] == 8 and "rank correlation" in (out / "results.md").read_text()
    for name in (
        "results.md",
        "errors.csv",
        "tfail_scaling_production.png",
        "survival.png",
        "fig1_outliers.png",
    ):
        assert (out / name).is_file()
    with open(out / "outliers.csv", newline="") as fh:  # one outlier summary per run
        assert len(list(csv.DictReader(fh))) == len(runs)
    assert {(o["model"], o["n_atoms"]) for o in res["outliers"]} == {
        (r["model"], int(r["n_atoms"])) for r in runs
    }
    assert "Force outliers" in (out / "results.md").read_text()
    with open(out / "energy.csv", newline="") as fh:  # one energy summary per run that reached NVE
        energy = list(csv.DictReader(fh))
    key = ("model", "model_seed", "n_atoms", "instance_seed")
    reached = {tuple(r[k] for k in key) for r in runs if int(r["t_failure_steps"]) >= 3 * 10}
    nve = {tuple(r[k] for k in key) for r in runs if r["stage"] != "nvt"}
    assert reached and reached <= {tuple(e[k] for k in key) for e in energy} <= nve
    assert res["energy"]["comparisons"] and "Energy conservation" in (out / "results.md").read_text()
    assert str(tmp_path) not in (out / "results.md").read_text()
    from legato.workflows.study_v2_report import export_results

    files = export_results(study, tmp_path / "export")
    assert {f.name for f in files} >= {"runs.csv", "models.csv", "results.md", "legato_s1.pt"}
    exported = (tmp_path / "export" / "models" / "legato_s1.pt").read_bytes()
    assert str(tmp_path).encode() not in exported
    # failure rates per atom·ns: exposure = Σ n_atoms × (steps survived) × Δt
    e = prod["per_size"][0]
    sub = [r for r in runs if r["model"] == e["model"] and int(r["n_atoms"]) == e["n_atoms"]]
    cfg2["tfail"]["timestep_fs"] = dt = 1.9  # the study's saved value again (resumed below)
    expected = sum(e["n_atoms"] * int(r["t_failure_steps"]) * dt * 1e-6 for r in sub)
    assert e["atom_ns"] == pytest.approx(expected) and e["rate_per_atom_ns"]["hi"] > 0
    assert prod["pooled_rates"] and "rate ratio" in (out / "results.md").read_text()
    # the report is rewritten whenever asked for; with an ensemble missing it says so
    one = out / "tfail" / "legato_s2" / "size_1" / "failures.csv"
    one.rename(one.with_suffix(".bak"))
    StudyV2(load_study_v2_config(path, data=cfg2), out, resume=True, log=lambda s: None).run(("report",))
    text = (out / "results.md").read_text()
    assert "Interim report" in text and "legato_s2_N8" in text
    one.with_suffix(".bak").rename(one)
    StudyV2(load_study_v2_config(path, data=cfg2), out, resume=True, log=lambda s: None).run(("report",))
    assert "Interim report" not in (out / "results.md").read_text()
    # a finished study may grow: an arm added at a size keeps every finished ensemble as it was
    kept = {f: f.read_bytes() for f in (out / "tfail").glob("*/*/failures.csv")}
    grown = {**cfg2, "arm_sizes": {"allegro_2x": [1, "1x1x2"], "allegro_matched": [1]}}
    StudyV2(load_study_v2_config(path, data=grown), out, resume=True, log=lambda s: None).run()
    assert all(f.read_bytes() == b for f, b in kept.items())
    with open(out / "runs.csv", newline="") as fh:
        runs2 = list(csv.DictReader(fh))
    assert len(runs2) == len(runs) + 2 * 3 and {
        r["n_atoms"] for r in runs2 if r["model"] == "allegro_2x"
    } == {
        "8",
        "16",
    }
    assert "allegro_2x" in yaml.safe_load((out / "study_config.yaml").read_text())["arm_sizes"]
    shrunk = {**grown, "arm_sizes": {"allegro_2x": [1], "allegro_matched": [1]}}
    with pytest.raises(LegatoError, match="sections: arm_sizes"):  # dropping ensembles is no extension
        StudyV2(load_study_v2_config(path, data=shrunk), out, resume=True, log=lambda s: None)
    # Tables 1 and 4: grids added to the finished study train, run and measure only their models
    sharp_before = (out / "sharpness.csv").read_text().splitlines()
    trained = {f: f.stat().st_mtime_ns for f in (out / "train").glob("*/log.csv")}
    gridded = {
        **grown,
        "rho_grid": {"rhos": [0.02], "seeds": [1]},
        "lmax_grid": {"l_max": [0], "seeds": [1, 2]},
    }
    StudyV2(load_study_v2_config(path, data=gridded), out, resume=True, log=lambda s: None).run()
    assert all(f.read_bytes() == b for f, b in kept.items())
    assert all(f.stat().st_mtime_ns == t for f, t in trained.items())  # nothing retrained
    assert (out / "train" / "sam_rho0.02_s1" / "best_model.pt").is_file()
    lmax0 = yaml.safe_load((out / "train" / "adam_lmax0_s2" / "config.yaml").read_text())
    assert (
        lmax0["model"]["l_max"] == 0 and lmax0["training"]["max_epochs"] == 2 and not lmax0["sam"]["enabled"]
    )
    sharp_after = (out / "sharpness.csv").read_text().splitlines()
    assert sharp_after[: len(sharp_before)] == sharp_before and len(sharp_after) == len(sharp_before) + 3
    assert [line.split(",")[:2] for line in sharp_after[-3:]] == [
        ["legato_rho0.02", "1"],
        ["allegro_lmax0", "1"],
        ["allegro_lmax0", "2"],
    ]
    with open(out / "runs.csv", newline="") as fh:
        runs3 = list(csv.DictReader(fh))
    grid_runs = [r for r in runs3 if r["model"] == "legato_rho0.02"]
    assert len(runs3) == len(runs2) + 3 * 3 and {(r["model_seed"], r["n_atoms"]) for r in grid_runs} == {
        ("1", "8")
    }
    res = json.loads((out / "results.json").read_text())
    table1 = res["rho_grid"]
    assert [(r["x"], r["model"], r["runs"], r["models"]) for r in table1] == [
        (0.0, "allegro", 3, 1),
        (0.02, "legato_rho0.02", 3, 1),
        (0.05, "legato", 3, 1),
    ]
    assert all("paired_vs_reference" in r and "rate_ratio_vs_reference" in r for r in table1[1:])
    assert table1[1]["val_forces_rmse_meV_A"] > 0 and table1[1]["sharpness_worst_case"] is not None
    # the four arms' statistics are untouched by the grid's single models
    assert {e["model"] for e in res["stats"]["production"]["per_size"]} == set(ARMS)
    assert all(set(m["arms"]) == set(ARMS) for m in res["per_model"])
    assert "## Table 1: SAM's ρ" in (out / "results.md").read_text() and (out / "table1_rho.png").is_file()
    table4 = res["lmax_grid"]  # l_max 0, the arms' l_max 1 (Allegro, then Legato), two seeds each
    assert [(r["x"], r["model"], r["models"]) for r in table4] == [
        (0.0, "allegro_lmax0", 2),
        (1.0, "allegro", 2),
        (1.0, "legato", 2),
    ]
    assert (
        table4[0]["sharpness_worst_case_vs_reference"]["seeds"] == 2 and table4[0]["sharpness_worst_case_ci"]
    )
    assert "## Table 4: Allegro's l_max" in (out / "results.md").read_text()
    assert (out / "table4_lmax.png").is_file()
    with pytest.raises(LegatoError, match="sections: lmax_grid, rho_grid"):  # dropping grid models: refused
        StudyV2(load_study_v2_config(path, data=grown), out, resume=True, log=lambda s: None)


def test_a_switched_off_stage_may_be_switched_on(tiny_data, tmp_path):
    off = load_study_v2_config(_config(tmp_path, tiny_data, errors={"enabled": False}))
    out = tmp_path / "study"
    StudyV2(off, out, log=lambda s: None)
    (out / "stages.json").write_text(json.dumps({"errors": {"result": {}, "wall_s": 0.0}}))
    on = load_study_v2_config(_config(tmp_path, tiny_data))
    study = StudyV2(on, out, resume=True, log=lambda s: None)
    assert not study.done("errors") and "errors" not in json.loads((out / "stages.json").read_text())
    assert yaml.safe_load((out / "study_config.yaml").read_text())["errors"]["enabled"] is True
    # once it has made its table, its section is fixed again
    (out / "stages.json").write_text(json.dumps({"errors": {"result": {"rows": 1}, "wall_s": 1.0}}))
    (out / "errors.csv").write_text("model\n")
    with pytest.raises(LegatoError, match="sections: errors"):
        StudyV2(off, out, resume=True, log=lambda s: None)


def test_config_base(tiny_data, tmp_path):
    """``base: <file>``: whole sections from another config, its relative paths kept relative
    to its own folder; a missing or circular base is one clear error."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "data").mkdir()
    data = tmp_path / "data" / "frames.extxyz"
    data.write_bytes(tiny_data.read_bytes())
    cfg = yaml.safe_load((CONFIGS / "study_v2_tiny.yaml").read_text())
    cfg["data"] = "data/frames.extxyz"  # relative to the base's folder (tmp_path)
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(cfg))
    variant = tmp_path / "sub" / "variant.yaml"
    variant.write_text(
        yaml.safe_dump({"version": 2, "base": "../base.yaml", "seeds": [7], "tfail": cfg["tfail"]})
    )
    v, b = load_study_v2_config(variant), load_study_v2_config(tmp_path / "base.yaml")
    assert v.data == b.data == str(data) and v.seeds == [7] and v.train == b.train
    variant.write_text(yaml.safe_dump({"version": 2, "base": "missing.yaml"}))
    with pytest.raises(LegatoError, match="base config missing.yaml not found"):
        load_study_v2_config(variant)
    variant.write_text(yaml.safe_dump({"version": 2, "base": "variant.yaml"}))
    with pytest.raises(LegatoError, match="leads back to itself"):
        load_study_v2_config(variant)


def test_cli_refuses_bad_input(tiny_data, tmp_path):
    path = _config(tmp_path, tiny_data)
    r = subprocess.run(
        ["legato", "study", str(path), "--out", str(tmp_path / "o"), "--stages", "data,trian"],
        capture_output=True,
        text=True,
    )
    assert r.returncode != 0 and "Traceback" not in r.stderr and "trian" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = subprocess.run(
        ["legato", "study", str(path), "--out", str(tmp_path / "o"), "--max-hours", "0"],
        capture_output=True,
        text=True,
    )
    assert r.returncode != 0 and "max-hours" in r.stderr and "Traceback" not in r.stderr


def test_a_broken_saved_config_is_one_error(tiny_data, tmp_path):
    out = tmp_path / "study"
    out.mkdir()
    (out / "study_config.yaml").write_text("version: 2\ndata: x\nbogus: 1\n")
    with pytest.raises(LegatoError, match="saved config .* unknown key 'bogus'"):
        StudyV2(load_study_v2_config(_config(tmp_path, tiny_data)), out, resume=True, log=lambda s: None)


def _rows(fail: bool) -> list[dict]:
    """Synthetic runs.csv rows: 2 arms x 2 models x 2 sizes x 4 boxes; with ``fail``, every
    other run fails before its budget (earlier at the larger size)."""
    rows = []
    for arm in ("allegro", "legato"):
        for seed in (1, 2):
            for n, budget in ((8, 600), (64, 300)):
                for inst in range(4):
                    failed = fail and inst % 2 == 0
                    t = (100 + 37 * inst + 11 * seed + (50 if arm == "legato" else 0)) * (8 / n) ** 0.3
                    steps = int(t) if failed else budget
                    rows.append(
                        {
                            "model": arm,
                            "model_seed": seed,
                            "n_atoms": n,
                            "instance_seed": inst,
                            "stage": "nve",
                            "t_failure_steps": steps,
                            "t_total_steps": steps + 100,
                            "reason": "temperature" if failed else "budget",
                            "censored": not failed,
                        }
                    )
    return rows


def test_no_beta_or_time_ratio_from_runs_that_all_reached_the_budget():
    """A mean over runs that all reached their budget is the budget: the report gives no β and
    no ratio of means for it (the old report printed β = log 2 / log 8 = 0.33 of the budgets)."""
    from legato.workflows.study_v2_markdown import markdown
    from legato.workflows.study_v2_report import analyse

    quiet = analyse(_rows(fail=False), "production", 200, 0.95)
    assert quiet["beta"] == {} and quiet["beta_tests"] == []
    assert set(quiet["beta_omitted"]) == {"allegro", "legato"}
    assert all("ratio_of_means" not in c and "paired" not in c for c in quiet["comparisons"])
    text = markdown({"production": quiet}, [])
    assert "No β for legato: every run at N = 8, 64 reached its budget" in text and "0.33" not in text
    failing = analyse(_rows(fail=True), "production", 200, 0.95)
    assert set(failing["beta"]) == {"allegro", "legato"} and not failing["beta_omitted"]
    assert all("ratio_of_means" in c for c in failing["comparisons"])


def test_beta_from_means_leaves_out_a_size_where_every_run_reached_its_budget():
    """Failures at N = 8 and 64, none at N = 512: the β of means is fitted to N = 8 and 64 only
    (a mean at 512 would be its budget), while the Weibull fit keeps 512's censored runs."""
    from legato.workflows.study_v2_markdown import markdown
    from legato.workflows.study_v2_report import analyse

    rows = _rows(fail=True)
    quiet = [
        r
        | {"n_atoms": 512, "t_failure_steps": 150, "t_total_steps": 250, "reason": "budget", "censored": True}
        for r in rows
        if r["n_atoms"] == 64
    ]
    two, three = analyse(rows, "production", 200, 0.95), analyse(rows + quiet, "production", 200, 0.95)
    for arm in ("allegro", "legato"):
        b2, b3 = two["beta"][arm], three["beta"][arm]
        assert b3["sizes"] == [8, 64] and b3["quiet_sizes"] == [512] and b2["quiet_sizes"] == []
        assert b3["pooled"] == b2["pooled"] and b3["per_model"] == b2["per_model"]
        assert b3["weibull"]["runs"] == b2["weibull"]["runs"] + 8  # 2 models x 4 boxes
    text = markdown({"production": three}, [])
    assert "β of legato from means at N = 8, 64 only: every run at N = 512 reached its budget" in text


def test_grid_trends_rank_the_grid_models_by_their_value():
    from legato.workflows.study_v2_grids import grid_trends, trend_markdown

    points = [(0.0, "allegro"), (0.01, "legato"), (0.05, "legato_rho0.05")]
    seeds = [1, 2]
    # survival falls with rho for both seeds; seed 2 lives longer; a larger size is ignored
    mean = {("allegro", 1): 900, ("legato", 1): 600, ("legato_rho0.05", 1): 300}
    mean |= {(a, 2): m + 50 for (a, _), m in mean.items()}
    runs = [
        {"model": a, "model_seed": s, "n_atoms": 128, "instance_seed": i, "t_failure_steps": m + d}
        for (a, s), m in mean.items()
        for i, d in enumerate((-10, 10))
    ] + [{"model": "allegro", "model_seed": 1, "n_atoms": 1024, "instance_seed": 0, "t_failure_steps": 1}]
    models = [{"model": a, "model_seed": s, "forces_rmse_meV_A": 1000.0 / m} for (a, s), m in mean.items()]
    sharp = [
        {"model": a, "model_seed": s, "worst_case_value": 0.03 - x / 2} for x, a in points for s in seeds
    ]
    t = grid_trends(points, seeds, runs, models, sharp)
    assert t["x_vs_mean_nve_steps"]["models"] == 6 and t["x_vs_mean_nve_steps"]["spearman"] < -0.8
    assert t["test_forces_rmse_meV_A_vs_mean_nve_steps"]["spearman"] == pytest.approx(-1.0)
    assert t["x_vs_sharpness_worst_case"]["spearman"] < -0.8
    assert "| ρ vs mean NVE steps | -0.96 (p = 0.0028, 6) |" in trend_markdown(t, "ρ")
    assert grid_trends(points[:1], seeds, runs, models, sharp)["x_vs_mean_nve_steps"] is None  # 2 models
