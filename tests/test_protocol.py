"""One time-to-failure protocol model: the CLI flags and the study config's tfail section are
made from it, refuse bad values with its one message, and its MD config runs both production
ensembles on the right clocks."""

from __future__ import annotations

import argparse
import ast
import inspect
import math
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
import yaml
from test_tfail import ConstantForce, analytic_failure_step, cubic_argon, fcc_argon

import legato.cli.tfail as cli_tfail
import legato.workflows.tfail as wf_tfail
from legato.errors import LegatoError
from legato.md.config import validate_config
from legato.md.potentials import LennardJones
from legato.workflows.protocol import TfailProtocol
from legato.workflows.study_config import TfailSection, validate_study_config
from legato.workflows.tfail import run_ensemble

torch.set_num_threads(1)
QUIET = {"progress": False, "log": lambda s: None}
ENSEMBLE_KEYS = {
    "structure",
    "structure_index",
    "sizes",
    "instances",
    "seed",
    "max_steps_by_size",
    "instances_by_size",
    "checkpoint_every",
}
#: the recorded protocol of output folders written before the new options existed
OLD_KEYS = {
    "temperature_K",
    "timestep_fs",
    "nvt_steps",
    "max_steps",
    "perturb_A",
    "check_every",
    "temperature_window_K",
    "min_distance_A",
    "max_force_outliers",
    "outlier_sigma",
    "thermostat_tau_fs",
    "skin_A",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    cli_tfail.add_arguments(parser)
    return parser


# ----------------------------------------------------------------------------- (a) one definition
def test_every_field_has_one_flag_and_one_study_key():
    actions = {a.dest: a for a in _parser()._actions}
    for name, field in TfailProtocol.model_fields.items():
        action = actions[name]
        assert action.option_strings == [cli_tfail.flag(name)]
        assert action.default == field.default and field.description in action.help
        assert TfailSection.model_fields[name].default == field.default
    assert set(TfailSection.model_fields) == set(TfailProtocol.model_fields) | ENSEMBLE_KEYS
    # nothing else defines them: no hand-written flag, no re-declared study key, no other class
    tree = ast.parse(inspect.getsource(cli_tfail))
    literal = {
        arg.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument"
        for arg in node.args
        if isinstance(arg, ast.Constant)
    }
    assert not literal & {cli_tfail.flag(n) for n in TfailProtocol.model_fields}
    assert not set(TfailSection.__annotations__) & set(TfailProtocol.model_fields)
    assert wf_tfail.TfailProtocol is TfailProtocol and issubclass(TfailSection, TfailProtocol)
    # the flags of earlier versions are all still there
    old = {"--temperature-K", "--timestep-fs", "--nvt-steps", "--thermostat-tau-fs", "--max-steps"}
    old |= {"--perturb-A", "--check-every", "--temperature-window-K", "--min-distance-A"}
    old |= {"--max-force-outliers", "--outlier-sigma", "--force-sigma-eV-A", "--checkpoint-every"}
    assert old <= {s for a in _parser()._actions for s in a.option_strings}


def test_cli_values_and_disabled_checks():
    args = _parser().parse_args(["m.pt", "--structure", "s", "--out", "o"])
    assert cli_tfail.protocol_from_args(args) == TfailProtocol()
    argv = ["m.pt", "--structure", "s", "--out", "o", "--min-distance-A", "0", "--production", "nvt"]
    argv += ["--temperature-window-K", "100,300", "--min-pair-distance-A", "H-H=1.0, N-H=0.8"]
    argv += ["--thermostat-tau-fs", "none", "--max-force-outliers", "3"]
    p = cli_tfail.protocol_from_args(_parser().parse_args(argv))
    assert p.min_distance_A is None and p.production == "nvt" and p.max_force_outliers == 3
    assert p.temperature_window_K == (100.0, 300.0)
    assert p.min_pair_distance_A == {"H-H": 1.0, "N-H": 0.8}
    # one meaning of "disabled" everywhere: None (0 is stored as None)
    assert TfailProtocol(min_distance_A=0).min_distance_A is None
    assert (
        validate_config(TfailProtocol(min_distance_A=0).md_config(1, 0, False)).checks.min_distance_A is None
    )
    cfg = validate_study_config({"data": "x.extxyz", "tfail": {"min_distance_A": 0}})
    assert cfg.tfail.protocol().min_distance_A is None


def test_to_dict_keeps_old_records_and_study_configs_keep_their_meaning():
    p = TfailProtocol()
    assert set(p.to_dict()) == OLD_KEYS  # new options left out at their default
    assert TfailProtocol(**p.to_dict()) == p
    q = TfailProtocol(production="nvt", min_pair_distance_A={"H-H": 1.0})
    assert set(q.to_dict()) == OLD_KEYS | {"production", "min_pair_distance_A"}
    assert TfailProtocol(**q.to_dict()) == q
    with open(Path(__file__).resolve().parents[1] / "configs" / "study.yaml") as fh:
        cfg = validate_study_config(yaml.safe_load(fh))
    assert cfg.tfail.protocol((2, 2, 2)).to_dict() == {
        "temperature_K": 200.0,
        "timestep_fs": 2.5,
        "nvt_steps": 100,
        "thermostat_tau_fs": 62.5,
        "max_steps": 1000,
        "perturb_A": 0.01,
        "check_every": 10,
        "temperature_window_K": "auto",
        "min_distance_A": 0.5,
        "max_force_outliers": None,
        "outlier_sigma": 5.0,
        "skin_A": 1.0,
    }


# ----------------------------------------------------------------------------- (b) one message
BAD = [
    ("temperature_K", "nan", math.nan),
    ("min_distance_A", "-0.5", -0.5),
    ("temperature_window_K", "300,100", [300.0, 100.0]),
    ("temperature_window_K", "200,200", [200.0, 200.0]),
    ("min_pair_distance_A", "H-Q=1.0", {"H-Q": 1.0}),
    ("min_pair_distance_A", "H-H=0", {"H-H": 0}),
    ("production", "npt", "npt"),
]


def _core(message: str, name: str) -> str:
    m = re.search(rf"invalid value for '(?:tfail\.)?{name}[^']*': (.*)$", message)
    assert m, message
    return m.group(1)


@pytest.mark.parametrize("name, text, value", BAD, ids=[f"{b[0]}={b[1]}" for b in BAD])
def test_same_bad_value_same_message_everywhere(tmp_path, name, text, value):
    with pytest.raises(LegatoError) as api:
        TfailProtocol(**{name: value})
    with pytest.raises(LegatoError) as study:
        validate_study_config({"data": "x.extxyz", "tfail": {name: value}})
    out = tmp_path / "out"
    argv = ["m.pt", "--structure", str(tmp_path / "s.extxyz"), "--out", str(out), cli_tfail.flag(name), text]
    proc = subprocess.run(
        [shutil.which("legato") or "legato", "tfail", *argv], capture_output=True, text=True, timeout=300
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith(f"error: {cli_tfail.flag(name)}: ")
    assert not out.exists() and list(tmp_path.iterdir()) == []
    core = _core(str(api.value), name)
    assert _core(str(study.value), name) == core and _core(lines[0], name) == core


# ----------------------------------------------------------------------------- (c) MD configs
@pytest.mark.parametrize("production", ["nve", "nvt"])
@pytest.mark.parametrize("nvt_steps", [0, 40])
def test_md_config_is_a_valid_md_config(production, nvt_steps):
    p = TfailProtocol(
        production=production, nvt_steps=nvt_steps, max_steps=100, min_pair_distance_A={"H-H": 1.0}
    )
    cfg = validate_config(p.md_config(3, 20, False))
    ensembles = [st.ensemble for st in cfg.schedule]
    if production == "nvt":  # one thermostat over both clocks
        assert ensembles == ["nvt"] and cfg.stage_bounds() == [(0, nvt_steps + 100)]
    else:
        assert ensembles == (["nvt", "nve"] if nvt_steps else ["nve"])
        assert cfg.stage_bounds()[-1] == (nvt_steps, nvt_steps + 100)
    assert cfg.replicas == 3 and cfg.steps == nvt_steps + 100
    assert cfg.checks.min_pair_distance_A == {"H-H": 1.0} and cfg.checks.min_distance_A == 0.5
    assert p.clock(nvt_steps + 30) == (p.production_stage, 30)
    assert p.clock(nvt_steps) == (("nvt", 0) if nvt_steps else (p.production_stage, 0))


# ----------------------------------------------------------------------------- (d) real runs
def test_production_nvt_rows_on_both_clocks(tmp_path):
    """A constant force heats the box (analytic failure step S from step 0); a thermostat with
    τ = 10⁶ fs does not slow it, so both ensembles fail at S on the total clock."""
    pot = ConstantForce(0.01)
    mass = fcc_argon().get_masses()[0]
    s = analytic_failure_step(8, 0.01, 100.0, 2.0, 10, mass)
    common = dict(temperature_K=100.0, timestep_fs=2.0, check_every=10, thermostat_tau_fs=1e6)
    common |= dict(min_distance_A=None)
    for production, stage in (("nve", "nve"), ("nvt", "nvt_production")):
        p = TfailProtocol(production=production, nvt_steps=30, max_steps=1000, **common)
        res = run_ensemble(pot, cubic_argon(), "1", 2, p, tmp_path / production, "cf", **QUIET)
        for rec in res.table:
            assert (rec.extra["stage"], rec.reason, rec.censored) == (stage, "temperature", False)
            assert rec.t_failure_steps == s - 30 and rec.extra["t_total_steps"] == str(s)
            assert rec.t_failure_fs == 2.0 * (s - 30)
    # failed in the first NVT stage: stage nvt, t = 0, the total clock still counts
    p = TfailProtocol(production="nvt", nvt_steps=s + 50, max_steps=100, **common)
    res = run_ensemble(pot, cubic_argon(), "1", 1, p, tmp_path / "early", "cf", **QUIET)
    assert [(r.extra["stage"], r.t_failure_steps, r.extra["t_total_steps"]) for r in res.table] == [
        ("nvt", 0, str(s))
    ]
    # alive after the budget: censored on the production clock
    p = TfailProtocol(production="nvt", nvt_steps=30, max_steps=100, **common)
    res = run_ensemble(pot, cubic_argon(), "1", 1, p, tmp_path / "cens", "cf", **QUIET)
    rec = next(iter(res.table))
    assert (rec.extra["stage"], rec.reason, rec.censored) == ("nvt_production", "budget", True)
    assert rec.t_failure_steps == 100 and rec.extra["t_total_steps"] == "130"


def test_pair_distance_failure_rows(tmp_path):
    """fcc argon (nearest neighbours 3.96 Å) with an Ar-Ar limit of 3.85 Å: thermal motion
    brings a pair closer; the local detector fires (min_distance and the window are off)."""
    p = TfailProtocol(
        temperature_K=150.0,
        timestep_fs=10.0,
        nvt_steps=20,
        max_steps=400,
        check_every=5,
        perturb_A=0.01,
        temperature_window_K=None,
        min_distance_A=None,
        min_pair_distance_A={"Ar-Ar": 3.85},
    )
    res = run_ensemble(LennardJones(r_max=6.0), fcc_argon(), "1", 3, p, tmp_path, "lj", **QUIET)
    assert {r.reason for r in res.table} == {"pair_distance"}
    for rec in res.table:
        total = int(rec.extra["t_total_steps"])
        assert total % 5 == 0 and "Ar-Ar" in rec.extra["detail"]
        assert rec.extra["stage"] == ("nvt" if total <= 20 else "nve")
        assert rec.t_failure_steps == (0 if total <= 20 else total - 20)
    with pytest.raises(LegatoError, match="min_pair_distance_A: H-H"):  # not a species of the box
        run_ensemble(
            LennardJones(r_max=6.0),
            fcc_argon(),
            "1",
            1,
            p.model_copy(update={"min_pair_distance_A": {"H-H": 1.0}}),
            tmp_path / "h",
            "lj",
            **QUIET,
        )
    assert not (tmp_path / "h").exists()
