"""Bead RDFs: the ideal gas gives g = 1, identical beads give the classical g(r), and the
beads of a PIMD run's bead trajectory are read per bead."""

from __future__ import annotations

import ase.io
import numpy as np
import pytest
from ase import Atoms
from md_helpers import argon_box, lj
from test_pimd_runner import _config

from legato.errors import LegatoError
from legato.pimd import PIMDRunner
from legato.pimd.rdf import bead_rdf


def test_ideal_gas_is_one():
    rng = np.random.default_rng(0)
    n, box = 3000, 30.0
    atoms = Atoms(
        ["Ar"] * (n // 2) + ["Xe"] * (n // 2), positions=rng.random((n, 3)) * box, cell=[box] * 3, pbc=True
    )
    r, g = bead_rdf([atoms], 6.0, n_bins=12)
    assert set(g) == {"Ar-Ar", "Ar-Xe", "Xe-Xe"}
    for curve in g.values():
        assert np.all(np.abs(curve[4:] - 1.0) < 0.08)  # r > 2 Å: thousands of pairs per bin


def test_identical_beads_give_the_classical_rdf():
    atoms = argon_box(2, rattle=0.1)
    frame = atoms.copy()
    for _ in range(3):
        frame += atoms
    frame.set_array("bead", np.repeat(np.arange(4), len(atoms)))
    r1, g1 = bead_rdf([atoms], 5.0)
    r4, g4 = bead_rdf([frame], 5.0)
    assert np.allclose(g1["Ar-Ar"], g4["Ar-Ar"]) and g1["Ar-Ar"].max() > 3.0


def test_rdf_of_a_pimd_bead_trajectory(tmp_path):
    PIMDRunner(lj(7.0), [argon_box(2, rattle=0.05, seed=1)], _config(replicas=1), output_dir=tmp_path).run()
    frames = ase.io.read(tmp_path / "beads_000.extxyz", ":")
    r, g = bead_rdf(frames, 6.0, n_bins=60)
    first_peak = r[np.argmax(g["Ar-Ar"])]
    assert 3.6 < first_peak < 4.3  # fcc nearest neighbours at 5.6/√2 = 3.96 Å
    with pytest.raises(LegatoError, match="periodic"):
        bead_rdf([Atoms("Ar2", positions=[[0, 0, 0], [3, 0, 0]])], 5.0)


def test_rdf_command_on_a_bead_trajectory(tmp_path, capsys):
    """Simple cubic lattice (a = 3.05 Å), 4 beads each rigidly shifted: every bead sees the
    perfect lattice, so g is 0 below a and the first shell holds exactly 6 neighbours; mixing
    beads would put pairs at the shifts' distances."""
    import csv
    import json

    from legato.cli.main import main

    a, n = 3.05, 4
    lattice = Atoms("Ar64", positions=np.indices((n, n, n)).reshape(3, -1).T * a, cell=[n * a] * 3, pbc=True)
    rng = np.random.default_rng(3)
    frame = Atoms(cell=lattice.cell, pbc=True)
    for _ in range(4):
        bead = lattice.copy()
        bead.positions += rng.random(3) * a
        frame += bead
    frame.set_array("bead", np.repeat(np.arange(4), len(lattice)))
    frames = []
    for k in range(3):
        f = frame.copy()
        f.info.update({"time_fs": 10.0 * k, "n_beads": 4})
        frames.append(f)
    ase.io.write(tmp_path / "beads_000.extxyz", frames)
    assert main(["rdf", str(tmp_path), "--r-max-A", "5", "--bins", "50", "--skip-fs", "5"]) == 0
    assert "2 frames of 4 beads" in capsys.readouterr().out
    out = tmp_path / "rdf_beads"
    with open(out / "rdf.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    r = np.array([float(x["r_A"]) for x in rows])
    g = np.array([float(x["g_Ar-Ar"]) for x in rows])
    shell = 4.0 / 3.0 * np.pi * (3.1**3 - 3.0**3)
    k = int(np.argmin(np.abs(r - a)))
    assert np.isclose(g[k], 6 * lattice.get_volume() / (63 * shell), rtol=1e-5)
    assert np.all(g[r < 3.0] == 0.0)
    meta = json.loads((out / "rdf.json").read_text())
    assert (
        meta["frames"] == 2
        and meta["beads_per_frame"] == [4]
        and abs(meta["first_peak_A"]["Ar-Ar"] - a) < 0.06
    )
    assert (out / "rdf.png").stat().st_size > 0
    assert main(["rdf", str(tmp_path), "--r-max-A", "5"]) == 2  # refuses to overwrite
    assert main(["rdf", str(tmp_path), "--source", "centroid"]) == 2  # no centroid files
