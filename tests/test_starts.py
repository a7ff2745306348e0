"""Independent starting structures (legato.workflows.starts, ``legato starts``) and their
decorrelation measurement (legato.workflows.decorrelation)."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from legato.errors import LegatoError
from legato.workflows import decorrelation as D
from legato.workflows import starts as S

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "nh3_liquid_gfn1.extxyz.gz"
MODEL = ROOT / "models" / "nh3_legato.pt"


@pytest.fixture(scope="module")
def frames():
    from legato.data import read_frames

    return read_frames(DATA)


@pytest.fixture(scope="module")
def pool(frames):
    return S.select_pool(frames, [200.0])


@pytest.fixture(scope="module")
def model():
    from legato.models import load_model

    return load_model(MODEL)


def _mic_distances(atoms) -> np.ndarray:
    return np.sort(atoms.get_all_distances(mic=True).ravel())


def _bond_lengths(atoms) -> np.ndarray:
    """Intramolecular distances without minimum image (molecules must be whole). [n_mol, 6]"""
    mols = S.molecules(atoms)
    p = atoms.positions[mols]  # [M, 4, 3]
    pairs = list(itertools.combinations(range(4), 2))
    return np.stack([np.linalg.norm(p[:, a] - p[:, b], axis=1) for a, b in pairs], axis=1)


def test_pool_is_last_frame_of_each_trajectory(pool):
    assert [a.info["traj"] for a in pool] == ["T200_b0", "T200_b1", "T200_b2"]
    assert all(a.info["step"] == 115 and len(a) == 128 for a in pool)
    assert np.allclose(pool[0].get_masses()[1:4], 2.014, atol=1e-3)  # deuterium kept


def test_rotations_are_the_24_proper_cube_rotations():
    r = S.ROTATIONS
    assert r.shape == (24, 3, 3) and np.allclose(r[0], np.eye(3))
    assert np.allclose(np.linalg.det(r), 1.0)
    assert all(np.allclose(m @ m.T, np.eye(3)) for m in r)
    flat = {tuple(m.astype(int).ravel()) for m in r}
    assert len(flat) == 24
    assert all(tuple((a @ b).astype(int).ravel()) in flat for a in r for b in r)  # a group


def test_rotated_tile_is_a_valid_periodic_configuration(pool):
    base = pool[0]
    ref_d, ref_b = _mic_distances(base), np.sort(_bond_lengths(S.transform_tile(base, 0, np.zeros(3))), 1)
    rng = np.random.default_rng(0)
    edge = S.cube_edge(base)
    for rot in range(24):
        t = S.transform_tile(base, rot, rng.random(3) * edge)
        assert np.allclose(t.cell.array, base.cell.array)
        assert np.allclose(_mic_distances(t), ref_d, atol=1e-9)  # an isometry of the periodic box
        bonds = _bond_lengths(t)
        assert np.allclose(np.sort(bonds, 1), ref_b, atol=1e-9)  # molecules whole, bonds unchanged
        assert bonds.max() < 2.0
        com = (t.positions[S.molecules(t)] * t.get_masses()[S.molecules(t)][..., None]).sum(1) / 20.06
        assert np.all(com > -1e-3) and np.all(com < edge + 1e-3)


def test_tiles_differ_and_contacts_are_honoured(pool):
    box, rec = S.tile_box(pool, (2, 2, 2), seed=11)
    assert len(box) == 8 * 128 and np.allclose(np.diag(box.cell.array), 2 * S.cube_edge(pool[0]))
    keys = [(q[0], q[1], *np.round(q[2:5], 3)) for q in rec["tiles"]]
    assert len(set(keys)) == 8
    tiles = box.positions.reshape(8, 128, 3)
    for a, b in itertools.combinations(range(8), 2):
        assert np.abs(tiles[a] - tiles[b]).max() > 1.0
    sym = np.array(box.get_chemical_symbols())
    mol_of = np.repeat(np.arange(len(box) // 4), 4)
    i, _, _, _ = S.contacts(box.positions, sym, mol_of, np.diag(box.cell.array), S.CONTACT_LIMITS_A)
    assert len(i) == 0
    # rigid moves only: every molecule keeps its pool frame's bond lengths
    whole = [S.transform_tile(p, 0, np.zeros(3)) for p in pool]
    ref = np.concatenate([np.sort(_bond_lengths(whole[q[0]]), 1) for q in rec["tiles"]])
    assert np.allclose(np.sort(_bond_lengths(box), 1), ref, atol=1e-9)
    assert np.allclose(box.get_masses(), np.tile(pool[0].get_masses(), 8))


def test_contact_limits_are_the_typical_closest_contacts_of_the_data(frames):
    md = [a for a in frames if a.info.get("source") == "md"][::9]
    per_frame = [S.intermolecular_minima([a]) for a in md]
    for key, limit in S.CONTACT_LIMITS_A.items():
        v = np.array([m[key] for m in per_frame])
        assert v.min() < limit <= np.median(v) + 0.01  # above the extremes, not above typical


def test_same_seed_same_box_and_file_roundtrip(pool, model, tmp_path):
    kw = dict(temperature_K=200.0, steps=3, model=model, quench_steps=2, progress=False)
    a = S.build_starts(pool, (1, 1, 2), 2, 5, **kw)
    b = S.build_starts(pool, (1, 1, 2), 2, 5, **kw)
    assert [x.info["instance_seed"] for x in a] == [5, 6]
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(x.positions, y.positions) and x.info == y.info
    assert not np.allclose(a[0].positions, a[1].positions)
    path = S.write_starts(tmp_path / "N256.extxyz", a, {"k": 1})
    back = S.read_starts(path)
    assert np.allclose(back[0].positions, a[0].positions) and np.allclose(
        back[0].get_masses(), a[0].get_masses()
    )
    assert back[1].info["tiles"] == [list(t) for t in __import__("json").loads(a[1].info["tiles"])]
    assert back[0].info["healing_steps"] == 3 and back[0].info["settings"] == {"k": 1}
    before = path.read_bytes()
    with pytest.raises(LegatoError, match="refusing to overwrite"):
        S.write_starts(path, b)
    assert path.read_bytes() == before


def test_failing_instance_is_redrawn_and_recorded(pool, model):
    # one tile: the box is a pool frame, so its closest N-N pair depends on the pool index
    # drawn; a limit between two of them fails the first draw at the step-0 check only
    loose = {"N-N": 2.0, "N-H": 1.5, "H-H": 1.2}  # below every pool frame's contacts: no pushes

    def nn_min(seed: int, attempt: int) -> float:
        box, _ = S.tile_box(pool, (1, 1, 1), S.derived_seed(seed, 128, attempt, 1), loose)
        d = box.get_all_distances(mic=True)[::4, ::4]
        return float(d[d > 0].min())

    for seed in range(10):
        d = [nn_min(seed, a) for a in range(6)]
        later = [a for a in range(1, 6) if d[a] > d[0] + 0.02]
        if later:
            break
    limit = 0.5 * (d[0] + d[later[0]])
    want = next(a for a in range(6) if d[a] > limit)
    kw = dict(temperature_K=200.0, steps=1, model=model, quench_steps=0, progress=False, limits_A=loose)
    (box,) = S.build_starts(pool, (1, 1, 1), 1, seed, fail_pairs_A={"N-N": limit}, **kw)
    assert box.info["redraws"] == want >= 1
    reasons = __import__("json").loads(box.info["redraw_reasons"])
    assert len(reasons) == want and all("pair_distance" in r for r in reasons)
    with pytest.raises(LegatoError, match="failed 2 times"):
        S.build_starts(pool, (1, 1, 1), 1, 0, fail_pairs_A={"N-N": 9.0}, max_redraws=1, **kw)


def test_overlap_is_one_for_copies_and_chance_for_independent_frames(frames, pool):
    k = 4
    ids = D.neighbour_ids(pool[0].repeat((2, 2, 2)), k, 32).reshape(8, 32, k)
    assert D.copy_overlap(ids) == 1.0
    last = S.select_pool(frames)  # 12 independent boxes, 200-400 K
    ids = np.stack([D.neighbour_ids(a, k, 32) for a in last])
    assert abs(D.copy_overlap(ids) - D.chance_overlap(k, 32)) < 0.04


def test_decorrelation_summary_on_synthetic_curves():
    t = np.arange(0, 2000, 20.0)
    ch = D.chance_overlap(4, 32)
    q = ch + (1 - ch) * np.exp(-t / 500.0)
    rng = np.random.default_rng(0)
    e_ref = -32.9 + 1e-4 * rng.standard_normal(len(t))
    rec = {"ks": [4], "time_fs": t.tolist(), "q_k4": q.tolist(), "e_ref_eV": e_ref.tolist()}
    rec["e_copies_eV"] = (-32.9 + 1e-4 * rng.standard_normal(len(t))).tolist()
    rec["e_tiled_eV"] = (e_ref + 0.01 * np.exp(-t / 100.0)).tolist()
    s = D.decorrelation_summary(rec, 4, 32, window_fs=60.0)
    assert s["tau_fs"] == pytest.approx(500.0, rel=0.02)
    assert 200 < s["healing_fs"] <= s["healing_stay_fs"] < 1000
    assert s["healing_1e_fs"] == pytest.approx(100.0, abs=60)


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("legato")
    return subprocess.run([str(exe), "starts", *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def test_cli_bad_input_and_no_overwrite(frames, tmp_path, capsys):
    import ase.io

    from legato.cli.main import main

    small = tmp_path / "small.extxyz"  # the three 200 K trajectories' last frames: a fast read
    last = [a for a in frames if a.info.get("traj", "").startswith("T200") and a.info["step"] == 115]
    ase.io.write(small, last, format="extxyz")
    out = tmp_path / "out"
    common = ["--structure", str(small), "--steps", "0", "--quench-steps", "0", "--instances", "2"]
    bad = _cli(*common, "--sizes", "0", "--out", str(out), cwd=tmp_path)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and "size" in bad.stderr
    args = ["starts", *common, "--sizes", "1x1x2", "--out", str(out), "--no-progress", "--threads", "1"]
    assert main(args) == 0
    made = out / "N256.extxyz"
    before = made.read_bytes()
    assert main(args) == 0 and "skipped" in capsys.readouterr().out and made.read_bytes() == before
    assert len(S.read_starts(made)) == 2
    other = _cli(*common, "--sizes", "1x1x2", "--seed", "3", "--out", str(out), cwd=tmp_path)
    assert other.returncode != 0 and "Traceback" not in other.stderr
    assert len(other.stderr.strip().splitlines()) == 1 and "refusing to overwrite" in other.stderr
    assert made.read_bytes() == before


def test_measure_decorrelation_runs_and_writes(pool, model, tmp_path):
    md = S.Langevin(200.0, quench_steps=2, progress=False)
    res = D.measure_decorrelation(pool, model, steps=4, every=2, repeats=1, out_dir=tmp_path, md=md)
    curves, summary = res["curves"], res["summary"]
    assert curves["step"] == [0, 2, 4] and curves["copies_alive"] == [1, 1, 1]
    assert curves["q_k12"][0] > 0.95 and summary["pool"] == ["T200_b0", "T200_b1", "T200_b2"]
    assert summary["delta0_eV_atom"] is None or np.isfinite(summary["delta0_eV_atom"])
    assert {p.name for p in tmp_path.iterdir()} == {
        "decorrelation.csv",
        "decorrelation.json",
        "decorrelation.png",
    }
    assert str(tmp_path) not in (tmp_path / "decorrelation.json").read_text()  # no paths recorded
