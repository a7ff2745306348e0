"""Neighbour lists, reading, batching and statistics."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from conftest import random_atoms

from legato import LegatoError
from legato.data import atoms_to_graph, collate, dataset_statistics, neighbor_list, read_frames


def brute_force_pairs(atoms: Atoms, r_max: float) -> set[tuple[int, int, int, int, int]]:
    cell = atoms.cell.array
    reps = [range(-4, 5) if p else range(1) for p in atoms.pbc]
    out = set()
    for s in itertools.product(*reps):
        off = np.array(s) @ cell
        for i in range(len(atoms)):
            d = atoms.positions + off - atoms.positions[i]
            r = np.linalg.norm(d, axis=1)
            for j in np.where((r < r_max) & (r > 1e-9))[0]:
                out.add((i, int(j), *s))
    return out


@pytest.mark.parametrize(
    "cell,pbc",
    [
        (np.diag([3.0, 3.2, 3.4]), (True, True, True)),  # cell far smaller than 2·r_max
        ([[3.0, 0.0, 0.0], [1.4, 2.8, 0.0], [0.7, -0.9, 3.1]], (True, True, True)),  # triclinic
        ([[3.0, 0.0, 0.0], [1.4, 2.8, 0.0], [0.0, 0.0, 9.0]], (True, True, False)),  # slab
        (np.diag([9.0, 9.0, 9.0]), (False, False, False)),  # cluster
    ],
)
def test_neighbor_list_equals_brute_force(cell, pbc) -> None:
    atoms = random_atoms(5, cell=cell, pbc=False, seed=1, min_dist=0.5)
    atoms.pbc = pbc
    r_max = 4.0
    ei, shifts = neighbor_list(atoms.positions, atoms.cell.array, atoms.pbc, r_max)
    got = {(int(i), int(j), *map(int, s)) for (i, j), s in zip(ei.T, shifts)}
    assert got == brute_force_pairs(atoms, r_max)
    assert np.all(np.diff(ei[0]) >= 0)  # sorted by centre


def test_read_lammps_and_extxyz(tmp_path, shared_box) -> None:
    atoms = read_frames(shared_box)[0]
    assert len(atoms) == 432 and np.allclose(atoms.cell.lengths(), 16.51501)
    assert np.allclose(atoms.get_masses()[atoms.numbers == 1], 2.014, atol=1e-3)


def labelled(seed: int, n: int = 6) -> Atoms:
    a = random_atoms(n, seed=seed)
    rng = np.random.default_rng(seed)
    e = -3.0 * (a.numbers == 7).sum() - 1.0 * (a.numbers == 1).sum() + 0.01 * rng.normal()
    a.calc = SinglePointCalculator(a, energy=e, forces=rng.normal(size=(n, 3)), stress=rng.normal(size=6))
    return a


def test_extxyz_labels_roundtrip(tmp_path) -> None:
    import ase.io

    frames = [labelled(s, n=5 + s) for s in range(4)]
    path = tmp_path / "d.extxyz"
    ase.io.write(path, frames)
    back = read_frames(path)
    g = atoms_to_graph(back[2], ["H", "N"], 3.5)
    assert g["energy"].item() == pytest.approx(frames[2].get_potential_energy())
    np.testing.assert_allclose(g["forces"].numpy(), frames[2].get_forces(), atol=1e-8)
    assert g["stress"].shape == (1, 3, 3)


def test_malformed_file_error(tmp_path) -> None:
    bad = tmp_path / "bad.extxyz"
    bad.write_text("3\nnot a comment line with garbage\nH 0 0\n")
    with pytest.raises(LegatoError, match="cannot read"):
        read_frames(bad)
    with pytest.raises(LegatoError, match="not found"):
        read_frames(tmp_path / "nope.xyz")


def test_collate_offsets() -> None:
    graphs = [atoms_to_graph(labelled(s, n=4 + s), ["H", "N"], 3.5) for s in range(3)]
    b = collate(graphs)
    assert b["pos"].shape[0] == 4 + 5 + 6
    assert b["batch"].tolist() == [0] * 4 + [1] * 5 + [2] * 6
    assert b["energy"].shape == (3,) and b["cell"].shape == (3, 3, 3)
    e0 = graphs[0]["edge_index"].shape[1]
    assert torch.equal(
        b["edge_index"][:, e0 : e0 + graphs[1]["edge_index"].shape[1]], graphs[1]["edge_index"] + 4
    )


def test_statistics() -> None:
    frames = [labelled(s, n=6 + (s % 3)) for s in range(12)]
    graphs = [atoms_to_graph(a, ["H", "N"], 3.5) for a in frames]
    st = dataset_statistics(graphs, 2)
    # the composition fit recovers the per-species energies used to make the labels
    assert st.energy_shifts == pytest.approx([-1.0, -3.0], abs=0.05)
    f = np.concatenate([a.get_forces() for a in frames])
    assert st.force_rms == pytest.approx(np.sqrt((f**2).mean()))
    edges = sum(g["edge_index"].shape[1] for g in graphs)
    assert st.avg_num_neighbors == pytest.approx(edges / sum(len(a) for a in frames))


@pytest.mark.parametrize("label", ["energy", "forces", "stress"])
def test_non_finite_label_rejected_naming_frame(tmp_path, label) -> None:
    """A NaN label in any frame is refused at load with the frame's index."""
    import ase.io

    frames = []
    for k in range(3):
        atoms = Atoms("NH3", positions=np.random.default_rng(k).normal(size=(4, 3)), cell=[8, 8, 8], pbc=True)
        res = {"energy": -1.0 * k, "forces": np.zeros((4, 3)), "stress": np.zeros(6)}
        if k == 2:
            res[label] = np.full_like(np.asarray(res[label], dtype=float), np.nan)
        atoms.calc = SinglePointCalculator(atoms, **res)
        frames.append(atoms)
    path = tmp_path / "bad.extxyz"
    ase.io.write(path, frames, format="extxyz")
    with pytest.raises(LegatoError, match=rf"frame 2 has a non-finite {label}"):
        read_frames(path)
    assert len(read_frames(path, index=slice(0, 2))) == 2
