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
