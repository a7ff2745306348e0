"""VACF spectra: peaks of a harmonic trajectory at ħω within the stated resolution, the sum
rule, neutron weighting, and ``legato spectrum`` on a trajectory written as legato md does."""

from __future__ import annotations

import json

import ase.io
import numpy as np
import pytest
from ase import Atoms
from pimd_helpers import HarmonicWells

from legato.cli.main import main
from legato.md.integrators import VelocityVerlet, maxwell_boltzmann
from legato.md.state import state_from_atoms
from legato.pimd.normal_modes import HBAR_EV_T
from legato.spectra.vacf import (
    MEV_PER_THZ,
    autocorrelation,
    neutron_weights,
    peak_THz,
    vdos,
    window_resolution_THz,
)
from legato.units import FS

K_EV_A2 = 2.0  # one spring constant: ω = √(k/m) differs by species


def _omega_meV(mass: float) -> float:
    return 1000.0 * HBAR_EV_T * np.sqrt(K_EV_A2 / mass)


def _harmonic_frames(n_frames: int = 1200, every: int = 2, dt_fs: float = 0.5) -> list[Atoms]:
    """Velocity-Verlet trajectory of 6 H and 6 N atoms in independent wells (frames with
    momenta and time_fs, as legato md writes them)."""
    atoms = Atoms("H6N6", positions=[[8.0 * i, 0.0, 0.0] for i in range(12)])
    state = maxwell_boltzmann(state_from_atoms([atoms], ["H", "N"], seeds=[4]), 300.0)
    wells = HarmonicWells(state.positions.clone(), K_EV_A2)
    integ = VelocityVerlet(dt_fs)
    state = integ.init(state, wells)
    frames = []
    for step in range(n_frames * every):
        if step % every == 0:
            a = state.to_atoms(0, ["H", "N"])
            a.info["time_fs"] = step * dt_fs
            frames.append(a)
        state = integ.step(state, wells)
    return frames


def test_autocorrelation_is_the_direct_average():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(50, 3, 3))
    direct = [np.mean([(v[t0] * v[t0 + lag]).sum(1) for t0 in range(50 - lag)], 0) for lag in range(50)]
    assert np.allclose(autocorrelation(v), np.array(direct), atol=1e-12)


def test_harmonic_peaks_within_the_resolution_and_sum_rule():
    frames = _harmonic_frames()
    v = np.stack([f.get_velocities() for f in frames]) * FS
    labels = frames[0].get_chemical_symbols()
    spec = vdos([v], labels, 1.0, max_lag_fs=400.0, weights={"H": 80.26 / 1.008, "N": 0.5 / 14.007})
    res_meV = spec.resolution_THz * MEV_PER_THZ
    assert 9.0 < res_meV < 11.0  # Hann over 400 fs: FWHM ≈ 1/t_max = 2.5 THz ≈ 10.3 meV
    for lab, mass in (("H", 1.008), ("N", 14.007)):
        peak = peak_THz(spec, lab) * MEV_PER_THZ
        assert abs(peak - _omega_meV(mass)) < 0.5 * res_meV, (lab, peak, _omega_meV(mass))
        assert spec.sum_rule[lab] == pytest.approx(1.0, abs=1e-9)
        assert np.trapezoid(spec.dos[lab], spec.frequency_THz) == pytest.approx(1.0, abs=1e-12)
    # H-weighted: the N band (ħω ≈ 24.7 meV) is ~2000 times weaker than the H band (≈ 92 meV)
    nu = spec.frequency_THz * MEV_PER_THZ
    w = spec.dos["weighted"]
    assert w[np.abs(nu - _omega_meV(1.008)) < 2].max() > 100 * w[np.abs(nu - _omega_meV(14.007)) < 2].max()


def test_resolution_follows_the_lag():
    a, b = window_resolution_THz(201, 1.0, "hann"), window_resolution_THz(401, 1.0, "hann")
    assert a == pytest.approx(2 * b, rel=0.02)
    assert window_resolution_THz(401, 1.0, "none") < b  # no window: narrower line, with side lobes


def test_neutron_weights_tell_nh3_from_nd3():
    w = neutron_weights(["H", "N", "D"], {"H": 1.008, "N": 14.007, "D": 2.014})
    assert w["H"] / w["D"] == pytest.approx((80.26 / 1.008) / (2.05 / 2.014))
    with pytest.raises(ValueError, match="cross-section"):
        neutron_weights(["Xe"], {"Xe": 131.3})


def test_cli_writes_csv_json_png(tmp_path, capsys):
    ase.io.write(tmp_path / "traj_000.extxyz", _harmonic_frames(600))
    assert main(["spectrum", str(tmp_path), "--source", "md", "--max-lag-fs", "200"]) == 0
    out = tmp_path / "spectrum_md"
    meta = json.loads((out / "spectrum.json").read_text())
    assert meta["frame_spacing_fs"] == 1.0 and meta["max_lag_fs"] == 200.0
    assert abs(meta["peak_meV"]["H"] - _omega_meV(1.008)) < 0.5 * meta["resolution_fwhm"]["meV"]
    header = (out / "spectrum.csv").read_text().splitlines()[0]
    assert header.startswith("frequency_THz,energy_meV,wavenumber_cm1,dos_H_per_meV")
    assert (out / "spectrum.png").stat().st_size > 10_000
    assert "resolution (FWHM)" in capsys.readouterr().out
    assert main(["spectrum", str(tmp_path), "--source", "md"]) == 2  # refuses to overwrite
    assert "--overwrite" in capsys.readouterr().err
    assert main(["spectrum", str(tmp_path), "--source", "beads"]) == 2
    assert (
        main(["spectrum", str(tmp_path), "--source", "md", "--skip-fs", "600", "-o", str(tmp_path / "x")])
        == 2
    )
    assert "frames left" in capsys.readouterr().err
