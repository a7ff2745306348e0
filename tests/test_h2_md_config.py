"""MD config values that would make every replica fail at step 0 are config errors."""

from __future__ import annotations

import pytest
import yaml

from legato.cli.main import main
from legato.errors import LegatoError
from legato.md import validate_config

BASE = {"structure": "x.extxyz", "reference_potential": {"kind": "lennard_jones"}}


@pytest.mark.parametrize(
    "change, message",
    [
        ({"timestep_fs": float("nan")}, "'timestep_fs': Input should be a finite number"),
        ({"timestep_fs": float("inf")}, "'timestep_fs': Input should be a finite number"),
        ({"timestep_fs": 0.0}, "'timestep_fs': Input should be greater than 0"),
        ({"timestep_fs": -1.0}, "'timestep_fs': Input should be greater than 0"),
        ({"temperature_K": float("nan")}, "'temperature_K': Input should be a finite number"),
        ({"temperature_K": float("inf")}, "'temperature_K': Input should be a finite number"),
        ({"temperature_K": -5.0}, "'temperature_K': Input should be greater than or equal to 0"),
        ({"temperature_K": 0.0}, r"stage 0 \(nvt\) needs a temperature above 0 K"),
        ({"temperature_K": 2.0e6}, r"temperature_K must be below the runaway bound 1e\+06"),
        (
            {"schedule": [{"ensemble": "nvt", "steps": 5, "temperature_K": 0.0}, {"ensemble": "nve"}]},
            r"stage 0 \(nvt\) needs a temperature above 0 K",
        ),
        (
            {"schedule": [{"ensemble": "langevin", "temperature_K": float("nan")}]},
            "'schedule.0.temperature_K': Input should be a finite number",
        ),
        ({"checks": {"temperature_window_K": [300.0, 100.0]}}, r"0 <= LO < HI, got \[300.0, 100.0\]"),
        ({"checks": {"temperature_window_K": [100.0, 100.0]}}, "0 <= LO < HI"),
        ({"checks": {"temperature_window_K": [-10.0, 100.0]}}, "0 <= LO < HI"),
        ({"checks": {"temperature_window_K": [100.0, float("inf")]}}, r"0 <= LO < HI, got \[100.0, inf\]"),
        (
            {"temperature_K": 0.0, "schedule": [{"ensemble": "nve"}]},
            "'auto' is \\[T/2, 3T/2\\] and needs temperature_K > 0",
        ),
        ({"thermostat": {"tau_fs": float("nan")}}, "'thermostat.tau_fs': Input should be a finite number"),
    ],
)
def test_step0_failures_are_config_errors(change, message):
    with pytest.raises(LegatoError, match=message):
        validate_config({**BASE, **change})


def test_zero_kelvin_nve_without_window_is_allowed():
    nve = {"schedule": [{"ensemble": "nve"}], "checks": {"temperature_window_K": None}}
    cfg = validate_config({**BASE, "temperature_K": 0.0, **nve})
    assert cfg.temperature_window() is None


@pytest.mark.parametrize("text", ["timestep_fs: .nan", "temperature_K: 0", "timestep_fs: -2"])
def test_cli_gives_one_error_line(tmp_path, capsys, text):
    path = tmp_path / "md.yaml"
    path.write_text(yaml.safe_dump(BASE) + text + "\n")
    assert main(["md", str(path), "--no-progress", "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists()
