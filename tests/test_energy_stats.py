"""Energy-conservation summaries of MD runs (legato.stats.energy) and their reading from an MD
batch's thermo.csv (legato.workflows.study_v2_energy)."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from legato.errors import LegatoError
from legato.stats.energy import conserved_energy_summary
from legato.workflows.study_v2_energy import batch_summaries, energy_stats


def test_summary_recovers_drift_and_fluctuation():
    t_fs = np.arange(0.0, 6000.0, 20.0)  # 6 ps
    n = 128
    wiggle = 0.3 * np.sqrt(2.0) * np.sin(2 * np.pi * t_fs / 37.0)  # std 0.3 meV/atom
    e_eV = (-4000.0 * 1e3 / n + 0.05 * t_fs * 1e-3 + wiggle) * n * 1e-3
    temp = 200.0 + 10.0 * np.cos(t_fs / 100.0)
    s = conserved_energy_summary(t_fs, e_eV, temp, n)
    assert s["drift_meV_atom_ps"] == pytest.approx(0.05, abs=2e-3)
    assert s["fluct_meV_atom"] == pytest.approx(0.3, rel=0.02)
    assert s["t_max_K"] == pytest.approx(210.0, abs=0.1) and s["duration_ps"] == pytest.approx(5.98)
    with pytest.raises(LegatoError):
        conserved_energy_summary(t_fs[:2], e_eV[:2], temp[:2], n)
    with pytest.raises(LegatoError):
        conserved_energy_summary(t_fs, e_eV * np.nan, temp, n)


def _thermo(folder, rows):
    folder.mkdir(parents=True)
    path = folder / "thermo.csv"
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, ["step", "time_fs", "stage", "replica", "temperature_K", "conserved_eV"])
        w.writeheader()
        w.writerows(rows)
    return path


def test_batch_maps_replicas_to_instances_and_keeps_the_production_stage(tmp_path):
    rows = []
    for step in range(10):
        stage = 0 if step < 4 else 1
        for rep in (0, 1):
            if rep == 1 and step > 5:  # replica 1 failed after 2 production samples
                continue
            e = -10.0 + (100.0 if stage == 0 else 0.001 * rep * step)
            rows.append(
                {"step": step, "time_fs": 2.0 * step, "stage": stage, "replica": rep}
                | {"temperature_K": 200 + step, "conserved_eV": e}
            )
    out = batch_summaries(_thermo(tmp_path / "N8_s3-4", rows))
    assert [r["instance_seed"] for r in out] == [3]  # replica 1 has too few production samples
    assert out[0]["n_atoms"] == 8 and out[0]["t_max_K"] == 209.0 and abs(out[0]["drift_meV_atom_ps"]) < 1e-6
    with pytest.raises(LegatoError, match="not an MD batch"):
        batch_summaries(_thermo(tmp_path / "other", rows))
    with pytest.raises(LegatoError, match="outside instances"):
        batch_summaries(_thermo(tmp_path / "N8_s3-3", rows + [{**rows[-1], "replica": 1, "step": 8}] * 3))


def test_energy_stats_compare_legato_with_each_adam_arm():
    rng = np.random.default_rng(0)
    rows = [
        {"model": arm, "model_seed": s, "n_atoms": 128, "instance_seed": i}
        | {"fluct_meV_atom": scale * (1 + 0.05 * rng.standard_normal())}
        | {"drift_meV_atom_ps": 0.01 if i else 0.0, "t_max_K": 230.0}
        for arm, scale in (("allegro", 0.2), ("legato", 0.1))
        for s in (1, 2, 3)
        for i in range(4)
    ]
    st = energy_stats(rows, n_boot=200, confidence=0.95)
    (c,) = st["comparisons"]
    assert c["a"] == "allegro" and c["fluct_ratio"]["value"] == pytest.approx(0.5, rel=0.05)
    assert c["fluct_ratio"]["hi"] < 0.6 and len(st["per_size"]) == 2
    assert c["paired"]["ratio"]["value"] == pytest.approx(0.5, rel=0.05) and c["paired"]["wins_a"] == 4
    # a drift of exactly 0 in some run cannot enter a mean of positive values: reported, not raised
    assert isinstance(st["per_size"][0]["abs_drift_meV_atom_ps"], str)
