"""Band centroids with block errors (``legato bands``): the centroid and peak of known lines,
band positions of synthetic Langevin oscillators at a known frequency recovered within the
resolution with a finite error bar, a known shift between two such sets, the comparison of a
phonon DOS with an MD run through the installed script, and one-line errors."""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import ase.io
import numpy as np
import pytest
from ase import Atoms

from legato.cli.main import main
from legato.spectra.bands import (
    BandRow,
    band_centroid_meV,
    band_peak_meV,
    band_row,
    band_statistics,
    block_spectra,
    shift_rows,
)
from legato.spectra.vacf import MEV_PER_THZ, neutron_weights
from legato.units import FS

HBAR_EV_FS = 0.6582119569  # ħ in eV·fs
DT_FS = 4.0  # frame spacing
N_FRAMES = 1000  # per trajectory: 4 ps


def _gaussian(e: np.ndarray, centre: float, sigma: float) -> np.ndarray:
    return np.exp(-0.5 * ((e - centre) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))


def _langevin_velocities(energy_meV: np.ndarray, n_frames: int, seed: int, tau_fs: float = 500.0):
    """Velocities [n_frames, n, 3] (arbitrary units) of independent harmonic oscillators of
    ħω = energy_meV [n] with Langevin friction 1/tau (thermal start, random phases; BAOAB,
    1 fs steps, a frame every DT_FS). Their VACF spectrum is a line at ħω, FWHM ħ/tau."""
    rng = np.random.default_rng(seed)
    w = (np.asarray(energy_meV) * 1e-3 / HBAR_EV_FS)[:, None]  # rad/fs, [n, 1]
    h, sub = 1.0, int(DT_FS)
    c1 = math.exp(-h / tau_fs)
    c2 = math.sqrt(1 - c1 * c1)
    v = rng.normal(size=(len(w), 3))
    x = rng.normal(size=(len(w), 3)) / w
    out = np.empty((n_frames, len(w), 3))
    for k in range(n_frames * sub):
        if k % sub == 0:
            out[k // sub] = v
        v -= 0.5 * h * w**2 * x
        x += 0.5 * h * v
        v = c1 * v + c2 * rng.normal(size=v.shape)
        x += 0.5 * h * v
        v -= 0.5 * h * w**2 * x
    return out


def _langevin_centroid(energy_meV: float, lo: float, hi: float, tau_fs: float = 500.0) -> float:
    """Centroid over [lo, hi] of the exact velocity spectrum of a Langevin oscillator,
    ∝ γE²/((E₀² − E²)² + γ²E²) with γ = ħ/tau: its tails make it asymmetric (60 → 60.20 meV
    over 30–90 meV), which the block estimate must reproduce within its error."""
    e = np.linspace(0.0, 600.0, 600_001)
    g = 1000.0 * HBAR_EV_FS / tau_fs
    return band_centroid_meV(e, g * e**2 / ((energy_meV**2 - e**2) ** 2 + (g * e) ** 2), lo, hi)


def _write_md_run(folder: Path, h_meV: float, n_traj: int = 2, seed: int = 0) -> Path:
    """A folder as legato md writes it: traj_000.extxyz, ... of 8 H (ħω = h_meV) and 2 N
    (20 meV) atoms, frames with momenta and info['time_fs']."""
    folder.mkdir(parents=True, exist_ok=True)
    energies = np.array([h_meV] * 8 + [20.0] * 2)
    for r in range(n_traj):
        v = 0.01 * _langevin_velocities(energies, N_FRAMES, seed=seed + r)  # Å/fs
        frames = []
        for t in range(N_FRAMES):
            a = Atoms("H8N2", positions=[[3.0 * i, 0.0, 0.0] for i in range(10)])
            a.set_velocities(v[t] / FS)
            a.info["time_fs"] = t * DT_FS
            frames.append(a)
        ase.io.write(folder / f"traj_{r:03d}.extxyz", frames)
    return folder


@pytest.fixture(scope="module")
def md_runs(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("bands")
    return _write_md_run(base / "md60", 60.0, seed=1), _write_md_run(base / "md55", 55.0, seed=11)


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _row(rows: list[dict[str, str]], **match) -> dict[str, str]:
    (found,) = [r for r in rows if all(r[k] == v for k, v in match.items())]
    return found


def test_centroid_and_peak_of_a_gaussian_line():
    e = np.arange(0, 200, 0.25)
    g = _gaussian(e, 50.0, 4.0)
    assert abs(band_centroid_meV(e, g, 30.0, 90.0) - 50.0) < 0.1
    assert abs(band_peak_meV(e, g, 30.0, 90.0) - 50.0) < 0.1
    # a second line outside the window does not move it; one inside pulls the centroid
    g2 = g + 0.5 * _gaussian(e, 150.0, 4.0)
    assert abs(band_centroid_meV(e, g2, 30.0, 90.0) - 50.0) < 0.1
    g3 = g + _gaussian(e, 70.0, 4.0)
    assert band_centroid_meV(e, g3, 30.0, 90.0) == pytest.approx(60.0, abs=0.1)
    with pytest.raises(ValueError, match="lo < hi"):
        band_centroid_meV(e, g, 90.0, 30.0)


def test_statistics_and_shifts():
    mean, err = band_statistics([1.0, 2.0, 3.0])
    assert mean == 2.0 and err == pytest.approx(1 / math.sqrt(3))
    assert math.isnan(band_statistics([4.0])[1])
    rows = [
        BandRow("harmonic", "lib", 30, 90, 60.0, float("nan"), 60.0, 0),
        BandRow("classical", "lib", 30, 90, 57.0, 0.3, 57.0, 8),
        BandRow("pimd", "lib", 30, 90, 52.0, 0.4, 52.0, 8),
    ]
    by = {s.source: s for s in shift_rows(rows)}
    assert by["classical"].shift_meV == pytest.approx(-3.0) and by["classical"].shift_err_meV == 0.3
    assert by["pimd"].shift_err_meV == pytest.approx(0.4)
    assert by["pimd"].shift_over_err == pytest.approx(-20.0)
    rel = {s.source: s for s in shift_rows(rows, reference="classical")}
    assert rel["pimd"].shift_meV == pytest.approx(-5.0) and rel["pimd"].shift_err_meV == pytest.approx(0.5)


def test_block_spectra_recover_the_band_with_an_error(md_runs):
    from legato.cli.spectrum import read_velocities, trajectory_files

    files = trajectory_files([str(md_runs[0])], "md")
    read = [read_velocities(f, None, 0.0) for f in files]
    vels, labels, masses, dt = [r[0] for r in read], read[0][1], read[0][2], read[0][3]
    blocks = block_spectra(vels, labels, dt, 4, 1000.0, "hann", neutron_weights(labels, masses))
    assert len(blocks) == 2 * 4
    assert {b.max_lag_fs for b in blocks} == {500.0}  # half a block of 250 frames x 4 fs
    res = blocks[0].resolution_THz * MEV_PER_THZ
    samples = [(b.energy_meV, b.dos["weighted"]) for b in blocks]
    curve = samples[0]
    row = band_row("classical", "lib", 30.0, 90.0, curve, samples)
    assert row.n_samples == 8
    assert abs(row.centroid_meV - 60.0) < 0.5 * res, (row, res)
    assert 0.0 < row.centroid_err_meV < 1.0
    exact = _langevin_centroid(60.0, 30.0, 90.0)
    assert abs(row.centroid_meV - exact) < 3 * row.centroid_err_meV, (row, exact)
    with pytest.raises(ValueError, match="at least 8 frames"):
        block_spectra(vels, labels, dt, 200, 1000.0)


def test_cli_shift_between_two_runs(md_runs, tmp_path, capsys):
    out = tmp_path / "shift"
    argv = ["bands", f"a={md_runs[0]}", f"b={md_runs[1]}", "--band", "lib=30:90", "--output", str(out)]
    assert main(argv) == 0
    meta = json.loads((out / "bands.json").read_text())
    res = meta["sources"]["a"]["resolution_fwhm_meV"]
    assert 3.0 < res < 5.0  # Hann over 1000 fs: ≈ 1 THz ≈ 4.1 meV
    assert meta["sources"]["a"]["frames_per_block"] == 250 and meta["sources"]["a"]["n_samples"] == 8
    bands = _read_csv(out / "bands.csv")
    a = _row(bands, source="a", band="lib")
    assert abs(float(a["centroid_meV"]) - 60.0) < res and float(a["centroid_err_meV"]) > 0
    assert abs(float(a["peak_meV"]) - 60.0) < 0.5 * res
    shift = _row(_read_csv(out / "shifts.csv"), source="b", reference="a", band="lib")
    d, err = float(shift["shift_meV"]), float(shift["shift_err_meV"])
    assert 0 < err < 1.0
    assert abs(d + 5.0) < max(3 * err, 1.0), (d, err)
    exact = _langevin_centroid(55.0, 30.0, 90.0) - _langevin_centroid(60.0, 30.0, 90.0)  # -4.92
    assert abs(d - exact) < 3 * err, (d, exact, err)
    assert float(shift["shift_over_err"]) == pytest.approx(d / err, rel=1e-3)
    assert "lib" in capsys.readouterr().out


def _write_phonons(folder: Path) -> Path:
    """phonon_dos.csv/.json with the columns legato phonons writes: a Gaussian at 60 meV."""
    folder.mkdir()
    nu = np.arange(0, 130.0, 0.05)  # THz
    e = nu * MEV_PER_THZ
    lines = [
        "frequency_THz,energy_meV,wavenumber_cm1,dos_H_per_meV,dos_N_per_meV,dos_neutron_weighted_per_meV"
    ]
    for k in range(len(nu)):
        h, n = _gaussian(e[k], 60.0, 2.0), _gaussian(e[k], 20.0, 2.0)
        lines.append(f"{nu[k]:.6g},{e[k]:.6g},{nu[k] * 33.3564:.6g},{h:.6g},{n:.6g},{h:.6g}")
    (folder / "phonon_dos.csv").write_text("\n".join(lines) + "\n")
    (folder / "phonon_dos.json").write_text(json.dumps({"sigma_meV": 2.0}))
    return folder


def _legato(*words: str, cwd: Path) -> subprocess.CompletedProcess:
    script = Path(sys.executable).parent / "legato"
    exe = str(script) if script.exists() else shutil.which("legato")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([exe, *words], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def test_installed_script_phonons_vs_md(md_runs, tmp_path):
    phon = _write_phonons(tmp_path / "phonons")
    md = tmp_path / "md"
    shutil.copytree(md_runs[0], md)
    res = _legato("bands", "harmonic=phonons", "classical=md", "--output", "out", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    out = tmp_path / "out"
    names = ["bands.csv", "shifts.csv", "spectra.csv", "bands.json", "bands.png"]
    assert all((out / n).is_file() for n in names)
    assert (out / "bands.png").stat().st_size > 10_000
    rows = _read_csv(out / "bands.csv")
    assert len(rows) == 2 * 5  # two sources x the five default bands
    h = _row(rows, source="harmonic", band="librational")
    assert float(h["centroid_meV"]) == pytest.approx(60.0, abs=0.1)
    assert h["centroid_err_meV"] == "" and h["n_samples"] == "0"
    c = _row(rows, source="classical", band="librational")
    assert abs(float(c["centroid_meV"]) - 60.0) < 2.0 and float(c["centroid_err_meV"]) > 0
    spectra = _read_csv(out / "spectra.csv")
    assert list(spectra[0]) == ["energy_meV", "harmonic", "classical"] and len(spectra) == 2001
    e = np.array([float(r["energy_meV"]) for r in spectra])
    for name in ("harmonic", "classical"):  # per meV, unit area
        assert np.trapezoid([float(r[name]) for r in spectra], e) == pytest.approx(1.0, abs=0.02)
    meta = json.loads((out / "bands.json").read_text())
    assert meta["sources"]["harmonic"]["files"] == [str(Path("phonons") / "phonon_dos.csv")]
    assert meta["sources"]["classical"]["files"] == ["md/traj_000.extxyz", "md/traj_001.extxyz"]
    assert meta["sources"]["harmonic"]["resolution_fwhm_meV"] == pytest.approx(4.71, abs=0.01)
    assert "librational" in res.stdout and "wrote" in res.stdout

    before = {n: (out / n).read_bytes() for n in names}
    stamps = {n: (out / n).stat().st_mtime_ns for n in names}
    again = _legato("bands", f"harmonic={phon / 'phonon_dos.csv'}", "classical=md", "-o", "out", cwd=tmp_path)
    assert again.returncode == 2
    assert len(again.stderr.strip().splitlines()) == 1 and "--overwrite" in again.stderr
    assert {n: (out / n).read_bytes() for n in names} == before
    assert {n: (out / n).stat().st_mtime_ns for n in names} == stamps


@pytest.mark.parametrize(
    ("words", "message"),
    [(["onlyone=path"], "at least two"), (["a=x", "b=x", "--band", "lib=90:30"], "LO < HI")],
)
def test_installed_script_bad_inputs(words, message, tmp_path):
    (tmp_path / "x").mkdir()
    res = _legato("bands", *words, "--output", "out", cwd=tmp_path)
    assert res.returncode == 2 and message in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr


def test_bad_inputs_one_line(md_runs, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    md = str(md_runs[0])
    cases = [
        (["a", f"b={md}"], "is not NAME=PATH"),
        ([f"a={md}", f"a={md}"], "given twice"),
        ([f"a={md}", "b=no/such"], "no such file or folder"),
        ([f"a={md}", f"b={tmp_path / 'empty'}"], "holds neither"),
        ([f"a={md}", f"b={md}", "--band", "lib=30-90"], "is not NAME=LO:HI"),
        ([f"a={md}", f"b={md}", "--curve", "Xe"], "no curve 'Xe'"),
        ([f"a={md}", f"b={md}", "--blocks", "200"], "at least 8 frames"),
    ]
    for words, message in cases:
        assert main(["bands", *words, "--output", str(tmp_path / "o")]) == 2, words
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, (words, err)
