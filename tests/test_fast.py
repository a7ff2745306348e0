"""The fast inference path (legato.models.fast) against the eager reference, and its physics.

One compiled model per dtype serves the whole module (the chunks have one fixed shape, so
every structure below reuses the same compiled code).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from conftest import random_atoms, small_model
from e3nn import o3

from legato.data import atoms_to_graph, collate
from legato.models.fast import FastAllegro, fast_model

CELL = np.array([[7.0, 0.0, 0.0], [1.0, 7.5, 0.0], [0.5, 0.3, 8.0]])  # triclinic
TOL = {torch.float64: 1e-10, torch.float32: 1e-5}


@pytest.fixture(scope="module", params=[torch.float32, torch.float64], ids=["float32", "float64"])
def pair(request):
    """(eager model, compiled FastAllegro) of the same weights, small chunks."""
    model = small_model(request.param, l_max=1)
    fast = FastAllegro(model, compile=True, chunk_edges=256)
    assert fast.compile, "torch.compile is not usable here"
    return model, fast


def graph(atoms, model):
    return atoms_to_graph(atoms, model.type_names, model.r_max, model.energy_shift.dtype, with_labels=False)


def assert_same(out, ref, dtype, keys=("energy", "atomic_energy", "forces", "virial", "stress")):
    for k in keys:
        scale = max(float(ref[k].abs().max()), 1e-12)
        err = float((out[k] - ref[k]).abs().max()) / scale
        assert err < TOL[dtype], f"{k}: relative difference {err:.1e}"


def test_fast_equals_eager(pair):
    model, fast = pair
    dtype = model.energy_shift.dtype
    for seed in range(3):  # different edge counts, one compiled shape
        atoms = random_atoms(30 + 7 * seed, cell=CELL, seed=seed)
        g = graph(atoms, model)
        with torch._dynamo.config.patch(error_on_recompile=seed > 0):
            assert_same(fast(g), model(g), dtype)
    assert fast.compile and fast.compile_seconds is not None


def test_fast_batched_frames(pair):
    model, fast = pair
    a, b = random_atoms(20, cell=CELL, seed=5), random_atoms(33, seed=6)
    g = collate([graph(a, model), graph(b, model)])
    assert_same(fast(g), model(g), model.energy_shift.dtype)


def test_fast_rotation_translation_permutation(pair):
    model, fast = pair
    dtype = model.energy_shift.dtype
    atoms = random_atoms(24, cell=CELL, seed=8)
    ref = fast(graph(atoms, model))
    torch.manual_seed(0)
    rot = o3.rand_matrix(dtype=torch.float64).numpy()
    moved = atoms.copy()
    moved.set_cell(atoms.cell.array @ rot.T, scale_atoms=False)
    moved.positions = atoms.positions @ rot.T + np.array([0.3, -1.2, 2.0])
    out = fast(graph(moved, model))
    tol = TOL[dtype] * 10
    assert abs(float(out["energy"] - ref["energy"])) <= tol * abs(float(ref["energy"]))
    f_rot = ref["forces"].double() @ torch.from_numpy(rot).T
    assert float((out["forces"].double() - f_rot).abs().max()) <= tol * float(ref["forces"].abs().max())
    perm = np.random.default_rng(0).permutation(len(atoms))
    out = fast(graph(atoms[perm], model))
    assert torch.allclose(
        out["forces"], ref["forces"][perm], rtol=0, atol=tol * float(ref["forces"].abs().max())
    )


def test_fast_forces_are_minus_gradient(pair):
    model, fast = pair
    if model.energy_shift.dtype != torch.float64:
        pytest.skip("finite differences need float64")
    atoms = random_atoms(16, cell=CELL, seed=9)
    forces = fast(graph(atoms, model))["forces"].numpy()
    h = 1e-5
    for i, x in [(0, 0), (5, 1), (11, 2)]:
        plus, minus = atoms.copy(), atoms.copy()
        plus.positions[i, x] += h
        minus.positions[i, x] -= h
        de = float(fast(graph(plus, model))["energy"] - fast(graph(minus, model))["energy"])
        assert abs(-de / (2 * h) - forces[i, x]) < 1e-6


def test_fast_lone_atom_and_isolated_atoms(pair):
    model, fast = pair
    from ase import Atoms

    lone = Atoms("N", positions=[[1.0, 1.0, 1.0]], cell=[30, 30, 30], pbc=True)
    out = fast(graph(lone, model))
    assert float(out["energy"]) == pytest.approx(float(model.energy_shift[1]))
    assert torch.count_nonzero(out["forces"]) == 0
    pair_far = Atoms("HN", positions=[[0, 0, 0], [0, 0, 1.0]], cell=[30, 30, 30], pbc=True)
    pair_far += Atoms("H", positions=[[15, 15, 15]])
    assert_same(fast(graph(pair_far, model)), model(graph(pair_far, model)), model.energy_shift.dtype)


def test_compile_failure_falls_back_to_eager(monkeypatch):
    model = small_model(torch.float64, l_max=1)

    def broken(fn, **kwargs):
        def call(*args):
            raise RuntimeError("no C++ compiler found")

        return call

    monkeypatch.setattr(torch, "compile", broken)
    fast = FastAllegro(model, compile=True, chunk_edges=64)
    g = graph(random_atoms(12, seed=1), model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = fast(g)
    assert any("compilation failed" in str(w.message) for w in caught)
    assert not fast.compile
    assert_same(out, model(g), torch.float64)


def test_default_and_opt_out(monkeypatch):
    model = small_model(torch.float64, l_max=1)
    monkeypatch.delenv("LEGATO_COMPILE", raising=False)
    assert isinstance(fast_model(model), FastAllegro)
    assert fast_model(model, compile=False) is model
    monkeypatch.setenv("LEGATO_COMPILE", "0")
    assert fast_model(model) is model
    from legato.md import LennardJones

    lj = LennardJones()
    assert fast_model(lj, compile=True) is lj


def test_fast_md_follows_eager_md(pair):
    """Short NVE through the compiled path stays on the eager trajectory."""
    from legato.md import run_md

    model, fast = pair
    dtype = model.energy_shift.dtype
    atoms = random_atoms(24, cell=CELL, seed=2)
    kw = dict(replicas=2, steps=20, timestep_fs=0.5, temperature_K=100.0, schedule=[{"ensemble": "nve"}])
    eager = run_md(atoms, model, output_dir=None, compile=False, **kw)
    fast_run = run_md(atoms, fast, output_dir=None, compile=False, **kw)  # the module's compiled model
    tol = 1e-9 if dtype == torch.float64 else 1e-4
    assert torch.allclose(fast_run.state.positions, eager.state.positions, rtol=0, atol=tol)
