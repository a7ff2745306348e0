"""Coverage builders: single beads of ring-polymer frames and gas-phase clusters cut from
periodic boxes are whole molecules with the right atoms, geometry and bookkeeping."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms

from legato.data.coverage import bead_frames, clusters, cut_cluster, split_by_group
from legato.data.crystal import ammonia_crystal
from legato.data.liquid import intact_molecules


def polymer_frame(box: Atoms, n_beads: int, rng: np.random.Generator) -> Atoms:
    """P copies of ``box`` (bead-major), bead b displaced by b·0.001 Å plus noise."""
    pos = np.concatenate(
        [box.positions + 1e-3 * b + rng.normal(0, 1e-3, box.positions.shape) for b in range(n_beads)]
    )
    frame = Atoms(np.tile(box.numbers, n_beads), positions=pos, cell=box.cell, pbc=True)
    frame.info.update(n_beads=n_beads, step=100)
    return frame


def test_bead_frames_are_the_beads_of_the_polymer():
    rng = np.random.default_rng(0)
    box = ammonia_crystal(cells=1)
    frame = polymer_frame(box, 8, rng)
    beads = bead_frames([frame], 3, rng)
    assert len(beads) == 3 and len({a.info["bead"] for a in beads}) == 3
    n = len(box)
    for a in beads:
        b = a.info["bead"]
        d = a.positions - frame.positions[b * n : (b + 1) * n]
        frac = d @ np.linalg.inv(a.cell.array)
        assert np.allclose(frac, np.round(frac), atol=1e-9)  # the same atoms up to wrapping
        assert a.get_chemical_formula() == box.get_chemical_formula()
        assert a.info["source"] == "pimd_bead" and a.info["step"] == 100
    with pytest.raises(ValueError, match="not a multiple"):
        bead_frames([frame[:-1]], 1, rng)


def test_clusters_are_whole_nearest_molecules_in_vacuum():
    rng = np.random.default_rng(1)
    box = ammonia_crystal(cells=2)  # ordered molecule by molecule, N first
    box.positions += 5.0  # molecules straddle the periodic boundary after wrapping
    box.wrap()
    for n in (1, 2, 4, 8):
        c = cut_cluster(box, n, 4, rng)
        assert len(c) == 4 * n and not c.pbc.any()
        assert intact_molecules(c, "NH3")  # no molecule torn apart by the boundary
        nn = c.positions[::4]
        if n > 1:  # the nearest neighbours: all within the crystal's second shell
            d = np.linalg.norm(nn[1:] - nn[0], axis=1)
            assert d.max() < 5.2
    frames = clusters([box], [1, 3], 4, 4, rng)
    assert [len(a) for a in frames] == [4] * 4 + [12] * 4
    with pytest.raises(ValueError, match="a cluster of"):
        cut_cluster(box, 33, 4, rng)


def test_split_by_group_keeps_groups_together():
    frames = [Atoms("H", info={"group": f"g{k // 3}"}) for k in range(60)]
    sets = split_by_group(frames, np.random.default_rng(0))
    for k in range(0, 60, 3):
        assert len(set(sets[k : k + 3])) == 1
    assert {"train", "validation", "test"} == set(sets)
    assert sets.count("train") == 48


def test_datasheet_statistics_of_clusters_without_stress():
    """Gas-phase frames carry no stress: the pressure comes from the periodic frames only."""
    from ase.calculators.singlepoint import SinglePointCalculator

    from legato.data.sampling import describe_dataset

    rng = np.random.default_rng(2)
    box = ammonia_crystal(cells=1)
    frames = [box.copy()] + clusters([box], [2], 2, 4, rng)
    for k, a in enumerate(frames):
        res = {"energy": -1.0 * len(a), "forces": rng.normal(0, 1, (len(a), 3))}
        if k == 0:
            res["stress"] = np.array([-0.01, -0.01, -0.01, 0.0, 0.0, 0.0])  # eV/Å³, 1.6 GPa
        a.calc = SinglePointCalculator(a, **res)
    st = describe_dataset(frames, r_max=4.0)
    assert st["frames"] == 3 and st["pressure_GPa"]["frames"] == 1
    assert st["pressure_GPa"]["mean"] == pytest.approx(1.6021766)
    assert describe_dataset(frames[1:], r_max=4.0)["pressure_GPa"] is None
