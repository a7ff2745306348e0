"""Phase-I ammonia crystal builder (``legato data crystal``)."""

from __future__ import annotations

import numpy as np
import pytest
from ase.neighborlist import neighbor_list

from legato.data.crystal import ammonia_crystal, lattice_constant_A
from legato.data.liquid import DEUTERIUM_MASS_AMU, intact_molecules
from legato.data.sampling import Trajectory, initial_box
from legato.errors import LegatoError


def test_crystal_geometry_and_order() -> None:
    atoms = ammonia_crystal(cells=2, temperature_K=150.0)
    assert len(atoms) == 128 and atoms.get_chemical_formula() == "H96N32"
    np.testing.assert_allclose(atoms.cell.lengths(), 2 * lattice_constant_A(150.0))
    assert list(atoms.get_chemical_symbols()[:8]) == ["N", "H", "H", "H"] * 2
    assert intact_molecules(atoms, "NH3")
    i, j, d = neighbor_list("ijd", atoms, 3.6)
    z = atoms.numbers
    nh = d[(z[i] == 7) & (z[j] == 1)]
    bonds, contacts = nh[nh < 1.2], nh[nh > 1.2]
    assert len(bonds) == 96 and np.allclose(bonds, bonds[0]) and 0.95 < bonds[0] < 1.05
    # every H points at an N of a neighbouring molecule: three H-bond contacts per N
    assert 2.2 < contacts.min() < 2.6 and np.sum(contacts < 2.6) == 96
    nn = d[(z[i] == 7) & (z[j] == 7)]
    assert 3.3 < nn.min() < 3.45  # "six hydrogen bonds of approximate length 3.4 Å" (Olovsson 1959)
    np.testing.assert_allclose(atoms.get_masses()[z == 1], DEUTERIUM_MASS_AMU)
    assert np.allclose(ammonia_crystal(1, deuterium=False).get_masses()[1], 1.008)


def test_cubic_symmetry_permutes_the_crystal() -> None:
    atoms = ammonia_crystal(cells=1, lattice_A=5.1)
    frac = atoms.get_scaled_positions()
    # the threefold axis along [111]: (x, y, z) -> (z, x, y) maps the crystal onto itself
    rotated = frac[:, [2, 0, 1]] % 1.0
    diff = (rotated[:, None, :] - frac[None, :, :] + 0.5) % 1.0 - 0.5
    match = np.abs(diff).max(axis=2) < 1e-8
    assert (match.sum(axis=1) == 1).all()


def test_lattice_constant_and_limits() -> None:
    assert lattice_constant_A(77.0) == pytest.approx(5.084)
    assert lattice_constant_A(171.0) == pytest.approx(5.138)
    with pytest.raises(LegatoError, match="melts"):
        lattice_constant_A(200.0)
    with pytest.raises(LegatoError, match="cells must be"):
        ammonia_crystal(cells=0)


def test_sampling_starts_crystal_trajectories() -> None:
    box = initial_box(Trajectory("x", 0, 100.0, phase="crystal", cells=1))
    assert len(box) == 16
    with pytest.raises(LegatoError, match="phase must be"):
        initial_box(Trajectory("x", 0, 100.0, phase="glass"))
