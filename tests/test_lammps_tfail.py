"""legato tfail --engine lammps: the same instances, stages and tables as the Python engine,
and resumable."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import small_model
from lammps_helpers import needs_lammps, shipped_frame

from legato.errors import LegatoError
from legato.lammps.tfail import run_ensemble_lammps
from legato.stats.failures import read_failure_table
from legato.workflows.protocol import TfailProtocol
from legato.workflows.tfail import run_ensemble

pytestmark = needs_lammps


def _rows(t) -> list[tuple]:
    keys = ("stage", "t_total_steps")
    rows = [(r.seed, r.n_atoms, r.t_failure_steps, r.reason, r.censored, *map(r.extra.get, keys)) for r in t]
    return sorted(rows)


def test_failing_model_same_outcomes_as_python_engine(tmp_path) -> None:
    """A random model heats the liquid past 300 K within the first check: both engines see
    the same instances fail at the same check, in NVT, and write the same table columns."""
    model = small_model(torch.float64)
    protocol = TfailProtocol(timestep_fs=0.5, nvt_steps=20, max_steps=60)
    base = shipped_frame(0)
    quiet = dict(log=lambda *a: None)
    py = run_ensemble(model, base, "1", 2, protocol, tmp_path / "py", "m", progress=False, **quiet)
    lmp = run_ensemble_lammps(model, base, "1", 2, protocol, tmp_path / "lmp", "m", ranks=2, **quiet)
    assert _rows(lmp.table) == _rows(py.table)
    assert [r.reason for r in lmp.table] == ["temperature", "temperature"]
    for name in ("failures.csv", "outliers.csv"):
        head_py = (tmp_path / "py" / name).read_text().splitlines()[0]
        assert (tmp_path / "lmp" / name).read_text().splitlines()[0] == head_py
    with pytest.raises(LegatoError, match="engine"):  # never mixed into a Python engine's folder
        run_ensemble_lammps(model, base, "1", 2, protocol, tmp_path / "py", "m", **quiet)


def test_gentle_model_same_outcomes_as_python_engine(tmp_path) -> None:
    """A gentle random model lets atoms collide after some NVE steps: both engines stop each
    instance at the same check for the same reason."""
    model = small_model(torch.float64, per_species_energy_scale=[0.02, 0.02])
    protocol = TfailProtocol(timestep_fs=0.5, nvt_steps=20, max_steps=60)
    base = shipped_frame(0)
    kw = dict(force_sigma_eV_A=0.5, log=lambda *a: None)
    py = run_ensemble(model, base, "1", 2, protocol, tmp_path / "py", "g", progress=False, **kw)
    lmp = run_ensemble_lammps(model, base, "1", 2, protocol, tmp_path / "lmp", "g", **kw)
    assert _rows(lmp.table) == _rows(py.table)
    assert {r.reason for r in lmp.table} == {"min_distance"}
    for seed, r in zip((0, 1), sorted(lmp.table, key=lambda r: r.seed)):
        rows = [x.split(",") for x in (tmp_path / "lmp" / "outliers.csv").read_text().splitlines()[1:]]
        steps = [int(x[4]) for x in rows if int(x[2]) == seed]
        assert steps == list(range(0, int(r.extra["t_total_steps"]) + 1, 10))  # one row per check


def test_censored_and_resumable(tmp_path) -> None:
    model = small_model(torch.float64, per_species_energy_scale=[0.02, 0.02])
    protocol = TfailProtocol(timestep_fs=0.5, nvt_steps=20, max_steps=10)
    base = shipped_frame(0)
    out = tmp_path / "lmp"
    kw = dict(force_sigma_eV_A=0.5, log=lambda *a: None)
    res = run_ensemble_lammps(model, base, "1", 1, protocol, out, "gentle", **kw)
    assert [(r.reason, r.censored, r.t_failure_steps) for r in res.table] == [("budget", True, 10)]
    outliers = (out / "outliers.csv").read_text().splitlines()
    assert [line.split(",")[4] for line in outliers[1:]] == ["0", "10", "20", "30"]
    lines = (out / "runs.jsonl").read_text().splitlines()
    again = run_ensemble_lammps(model, base, "1", 2, protocol, out, "gentle", **kw)  # one more seed
    new = (out / "runs.jsonl").read_text().splitlines()[len(lines) :]
    assert [json.loads(x)["seeds"] for x in new] == [[1]]
    assert len(again.table) == 2 and len(read_failure_table(out / "failures.csv")) == 2


def test_production_nvt_keeps_the_thermostat_and_counts_production_steps(tmp_path) -> None:
    """production: nvt keeps the one ``fix nvt`` on; rows are on the production clock."""
    from legato.lammps.tfail import instance_input

    nve = instance_input(TfailProtocol(nvt_steps=20, max_steps=10), "m.pth", ["H", "N"], None)
    nvt = instance_input(
        TfailProtocol(nvt_steps=20, max_steps=10, production="nvt"), "m.pth", ["H", "N"], None
    )
    assert "unfix integrate" in nve and "fix integrate all nve" in nve
    assert "unfix" not in nvt and " nve" not in nvt and nvt.count("fix integrate all nvt") == 1
    assert nvt.splitlines()[-2:] == ["run 20", "run 10"]
    alone = instance_input(TfailProtocol(nvt_steps=0, max_steps=10, production="nvt"), "m.pth", ["H"], None)
    assert alone.count("fix integrate all nvt") == 1 and alone.splitlines()[-1] == "run 10"

    model = small_model(torch.float64, per_species_energy_scale=[0.02, 0.02])
    protocol = TfailProtocol(timestep_fs=0.5, nvt_steps=20, max_steps=10, production="nvt")
    kw = dict(force_sigma_eV_A=0.5, log=lambda *a: None)
    res = run_ensemble_lammps(model, shipped_frame(0), "1", 1, protocol, tmp_path / "lmp", "gentle", **kw)
    assert _rows(res.table) == [(0, 128, 10, "budget", True, "nvt_production", "30")]
    record = json.loads((tmp_path / "lmp" / "protocol.json").read_text())["protocol"]
    assert record["production"] == "nvt"


def test_pair_distance_check_is_refused(tmp_path) -> None:
    protocol = TfailProtocol(timestep_fs=0.5, nvt_steps=20, max_steps=10, min_pair_distance_A={"H-H": 1.0})
    with pytest.raises(LegatoError, match="--engine lammps does not check min_pair_distance_A"):
        run_ensemble_lammps(
            small_model(torch.float64), shipped_frame(0), "1", 1, protocol, tmp_path / "x", "m"
        )
    assert not (tmp_path / "x").exists()
