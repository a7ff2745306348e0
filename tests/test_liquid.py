"""Liquid boxes: intact molecules, no close contacts, densities, replication, CLI errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from legato.cli.main import main
from legato.data.liquid import (
    DEUTERIUM_MASS_AMU,
    PAPER_BOX_LENGTH_A,
    build_liquid,
    density_g_cm3,
    intact_molecules,
    min_intermolecular_distance,
    paper_box,
    paper_density_g_cm3,
    replicate,
)
from legato.errors import LegatoError


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_box_has_intact_molecules_and_no_close_pairs(seed: int) -> None:
    atoms = build_liquid("NH3", 32, density_g_cm3=0.73, seed=seed, min_distance_A=1.9)
    assert len(atoms) == 128
    assert atoms.get_chemical_formula() == "H96N32"
    assert atoms.pbc.all()
    assert intact_molecules(atoms, "NH3")
    assert min_intermolecular_distance(atoms, 4) >= 1.9 - 1e-9
    assert density_g_cm3(atoms) == pytest.approx(0.73, rel=1e-10)
    # every N has exactly three H at a covalent distance (minimum image)
    d = atoms.get_all_distances(mic=True)
    n_idx = np.where(atoms.numbers == 7)[0]
    for i in n_idx:
        close = np.where((d[i] < 1.2) & (np.arange(len(atoms)) != i))[0]
        assert sorted(atoms.numbers[close].tolist()) == [1, 1, 1]


def test_seed_fixes_the_box() -> None:
    a = build_liquid("NH3", 8, density_g_cm3=0.7, seed=5)
    b = build_liquid("NH3", 8, density_g_cm3=0.7, seed=5)
    c = build_liquid("NH3", 8, density_g_cm3=0.7, seed=6)
    assert np.array_equal(a.positions, b.positions)
    assert not np.allclose(a.positions, c.positions)


def test_other_molecule_and_box_length() -> None:
    atoms = build_liquid("H2O", 16, box_length_A=8.0, seed=0)
    assert atoms.cell.lengths() == pytest.approx([8.0] * 3)
    assert intact_molecules(atoms, "H2O")
    assert not intact_molecules(atoms, "NH3")


def test_deuterium_masses_and_density() -> None:
    atoms = build_liquid("NH3", 32, density_g_cm3=paper_density_g_cm3(), seed=0, deuterium=True)
    m = atoms.get_masses()
    assert np.allclose(m[atoms.numbers == 1], DEUTERIUM_MASS_AMU)
    assert np.allclose(m[atoms.numbers == 7], 14.007)
    # 32 ND3 at the paper's number density: edge = 16.515 Å × (32/108)^(1/3)
    assert atoms.cell.lengths()[0] == pytest.approx(PAPER_BOX_LENGTH_A * (32 / 108) ** (1 / 3))
    assert paper_density_g_cm3(deuterium=False) == pytest.approx(0.678, abs=1e-3)


def test_broken_molecule_is_detected() -> None:
    atoms = build_liquid("NH3", 8, density_g_cm3=0.5, seed=0)
    atoms.positions[1] += atoms.cell.lengths()[0] / 2  # tear one H off its N
    assert not intact_molecules(atoms, "NH3")


def test_paper_box_has_the_paper_size_and_intact_molecules() -> None:
    atoms = paper_box(seed=3)
    assert len(atoms) == 432
    assert atoms.cell.lengths() == pytest.approx([PAPER_BOX_LENGTH_A] * 3)
    assert intact_molecules(atoms, "NH3")
    assert min_intermolecular_distance(atoms, 4) >= 1.9 - 1e-9


def test_paper_box_like_the_lammps_file_in_shared(shared_box: Path) -> None:
    """Against ``../shared/data/nh3_432.lmp`` (beside the repository); skipped without it."""
    from legato.data import read_frames

    atoms = paper_box(seed=3)
    ref = read_frames(shared_box)[0]
    assert len(ref) == len(atoms)
    assert ref.cell.lengths() == pytest.approx(atoms.cell.lengths(), abs=1e-4)
    assert sorted(ref.get_masses().round(2)) == sorted(atoms.get_masses().round(2))


def test_replicate_makes_128_k3_atoms_with_small_perturbation() -> None:
    base = build_liquid("NH3", 32, density_g_cm3=0.73, seed=0)
    big = replicate(base, 2, perturb_A=0.01, seed=4)
    assert len(big) == 128 * 8
    assert np.allclose(big.cell.array, 2 * base.cell.array)
    exact = base.repeat((2, 2, 2))
    d = big.positions - exact.positions
    d -= np.round(d @ np.linalg.inv(big.cell.array)) @ big.cell.array  # undo wrapping
    assert d.std() == pytest.approx(0.01, rel=0.1)
    assert np.abs(d).max() < 0.06
    assert intact_molecules(big, "NH3")
    with pytest.raises(LegatoError):
        replicate(base, 0)


def test_wrong_formula_and_impossible_density_raise() -> None:
    with pytest.raises(LegatoError, match="unknown molecule"):
        build_liquid("XyZ9", 4, density_g_cm3=0.7)
    with pytest.raises(LegatoError, match="too high"):
        build_liquid("NH3", 32, density_g_cm3=50.0)
    with pytest.raises(LegatoError, match="positive"):
        build_liquid("NH3", 32, density_g_cm3=-1.0)
    with pytest.raises(LegatoError, match="could not pack"):  # passes the volume check
        build_liquid("NH3", 32, density_g_cm3=1.2, max_attempts_per_molecule=512)


@pytest.mark.parametrize(
    "extra",
    [
        ["--molecule", "NotAMolecule", "--density-g-cm3", "0.7"],
        ["--molecule", "NH3", "--density-g-cm3", "40"],
        ["--molecule", "NH3", "--density-g-cm3", "0"],
    ],
)
def test_cli_liquid_errors_exit_2_with_one_line(extra, tmp_path, capsys) -> None:
    rc = main(["data", "liquid", "--molecules", "32", *extra, "--out", str(tmp_path / "b.xyz")])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("error: ") and err.count("\n") == 1
    assert not (tmp_path / "b.xyz").exists()


def test_cli_liquid_and_replicate_write_files_and_never_overwrite(tmp_path, capsys) -> None:
    from legato.data import read_frames

    out = tmp_path / "box.extxyz"
    args = [
        "data",
        "liquid",
        "--molecule",
        "NH3",
        "--molecules",
        "32",
        "--density-g-cm3",
        "0.7982",
        "--seed",
        "1",
        "--deuterium",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    atoms = read_frames(out)[0]
    assert len(atoms) == 128 and np.allclose(atoms.get_masses()[1:4], DEUTERIUM_MASS_AMU)
    before = out.read_bytes()
    assert main(args) == 2  # refuses to overwrite
    assert out.read_bytes() == before
    big = tmp_path / "big.extxyz"
    assert (
        main(
            [
                "data",
                "replicate",
                str(out),
                "--k",
                "2",
                "--perturb-A",
                "0.01",
                "--seed",
                "0",
                "--out",
                str(big),
            ]
        )
        == 0
    )
    assert len(read_frames(big)[0]) == 1024
    lmp = tmp_path / "paper.lmp"
    assert main(["data", "liquid", "--paper", "--molecules", "108", "--out", str(lmp)]) == 0
    paper = read_frames(lmp)[0]
    assert len(paper) == 432 and paper.cell.lengths()[0] == pytest.approx(PAPER_BOX_LENGTH_A)
    capsys.readouterr()
