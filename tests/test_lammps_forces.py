"""pair_style legato in real LAMMPS (1 and 2 MPI ranks) equals LegatoCalculator: energy,
per-atom energies, forces by atom id, stress from the pressure and from per-atom virials."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from lammps_helpers import deploy, needs_lammps, reference, shipped_frame, small_box, triclinic_cell

from legato.lammps import single_point

pytestmark = needs_lammps


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    return {dt: deploy(folder, dt) for dt in (torch.float32, torch.float64)}


def _compare(got: dict, ref: dict, dtype: torch.dtype) -> None:
    rtol = 1e-5 if dtype == torch.float32 else 1e-10
    scale_f = np.abs(ref["forces"]).max()
    scale_s = np.abs(ref["stress"]).max()
    assert got["energy"] == pytest.approx(ref["energy"], rel=rtol)
    np.testing.assert_allclose(got["energies"], ref["energies"], rtol=rtol, atol=rtol * 5)
    np.testing.assert_allclose(got["forces"], ref["forces"], rtol=rtol, atol=rtol * scale_f)
    np.testing.assert_allclose(got["stress"], ref["stress"], rtol=rtol, atol=rtol * scale_s)
    np.testing.assert_allclose(got["stress_atoms"], ref["stress"], rtol=rtol, atol=rtol * scale_s)


STRUCTURES = {"shipped128": shipped_frame, "triclinic": triclinic_cell, "small_box": small_box}


@pytest.mark.parametrize("name", list(STRUCTURES))
def test_single_point_matches_calculator(models, dtype, name, tmp_path) -> None:
    atoms = STRUCTURES[name]()
    pt, pth = models[dtype]
    got = single_point(atoms, pth, tmp_path)
    _compare(got, reference(atoms, pt), dtype)


@pytest.mark.parametrize("name, chunk", [("shipped128", None), ("shipped128", 100), ("triclinic", None)])
def test_two_ranks_match_calculator(models, name, chunk, tmp_path) -> None:
    """Also with the model called on chunks of centres of at most ``chunk`` edges."""
    atoms = STRUCTURES[name]()
    pt, pth = models[torch.float64]
    got = single_point(atoms, pth, tmp_path, ranks=2, chunk=chunk)
    _compare(got, reference(atoms, pt), torch.float64)


def test_paper_box_matches_calculator(models, shared_box, tmp_path) -> None:
    from legato.data import read_frames

    atoms = read_frames(shared_box)[0]
    assert len(atoms) == 432 and sorted(set(atoms.get_chemical_symbols())) == ["H", "N"]
    pt, pth = models[torch.float64]
    got = single_point(atoms, pth, tmp_path, ranks=2)
    _compare(got, reference(atoms, pt), torch.float64)


def test_two_threads_match_calculator(models, tmp_path) -> None:
    """pair_style legato threads 2 (torch intra-op threads of the rank)."""
    atoms = STRUCTURES["shipped128"]()
    pt, pth = models[torch.float64]
    got = single_point(atoms, pth, tmp_path, threads=2)
    assert "2 torch thread(s) per rank" in (tmp_path / "log.lammps").read_text()
    _compare(got, reference(atoms, pt), torch.float64)
