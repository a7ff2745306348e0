"""Physics of the model, in float32 and float64: symmetry, gradients, locality, smoothness."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import random_atoms, small_model
from scipy.spatial.transform import Rotation

from legato.data import atoms_to_graph, collate

TOL = {torch.float32: dict(rtol=2e-4, atol=2e-4), torch.float64: dict(rtol=1e-9, atol=1e-9)}


def evaluate(model, atoms) -> dict[str, np.ndarray]:
    dtype = next(model.parameters()).dtype
    g = atoms_to_graph(atoms, model.type_names, model.r_max, dtype)
    out = model(g)
    return {k: v.detach().double().numpy() for k, v in out.items()}


def random_orthogonal(seed: int, reflect: bool) -> np.ndarray:
    q = Rotation.random(random_state=seed).as_matrix()
    return -q if reflect else q


@pytest.mark.parametrize("reflect", [False, True], ids=["rotation", "reflection"])
@pytest.mark.parametrize("pbc", [True, False], ids=["periodic", "cluster"])
def test_o3_invariance_and_covariance(dtype, reflect: bool, pbc: bool) -> None:
    model = small_model(dtype)
    atoms = random_atoms(14, cell=[[5.0, 0.3, 0.0], [0.4, 5.2, 0.2], [-0.3, 0.1, 5.6]], pbc=pbc, seed=1)
    ref = evaluate(model, atoms)
    q = random_orthogonal(3, reflect)
    rot = atoms.copy()
    rot.positions = atoms.positions @ q.T
    rot.cell = atoms.cell.array @ q.T
    out = evaluate(model, rot)
    tol = TOL[dtype]
    np.testing.assert_allclose(out["energy"], ref["energy"], **tol)
    np.testing.assert_allclose(out["atomic_energy"], ref["atomic_energy"], **tol)
    np.testing.assert_allclose(out["forces"], ref["forces"] @ q.T, **tol)
    if pbc:
        np.testing.assert_allclose(out["stress"][0], q @ ref["stress"][0] @ q.T, **tol)


def test_translation_and_wrapping(dtype) -> None:
    model = small_model(dtype)
    atoms = random_atoms(12, seed=2)
    ref = evaluate(model, atoms)
    moved = atoms.copy()
    moved.positions += np.array([1.7, -3.1, 12.4])
    out = evaluate(model, moved)
    wrapped = moved.copy()
    wrapped.wrap()
    out_w = evaluate(model, wrapped)
    for o in (out, out_w):
        np.testing.assert_allclose(o["energy"], ref["energy"], **TOL[dtype])
        np.testing.assert_allclose(o["forces"], ref["forces"], **TOL[dtype])


def test_permutation(dtype) -> None:
    model = small_model(dtype)
    atoms = random_atoms(13, seed=3)
    perm = np.random.default_rng(0).permutation(len(atoms))
    ref, out = evaluate(model, atoms), evaluate(model, atoms[perm])
    np.testing.assert_allclose(out["energy"], ref["energy"], **TOL[dtype])
    np.testing.assert_allclose(out["forces"], ref["forces"][perm], **TOL[dtype])
    np.testing.assert_allclose(out["atomic_energy"], ref["atomic_energy"][perm], **TOL[dtype])


def test_supercell_is_extensive(dtype) -> None:
    model = small_model(dtype)
    # a cell smaller than 2·r_max: atoms see several images of themselves
    atoms = random_atoms(6, cell=np.diag([4.0, 4.2, 4.4]), seed=4)
    ref = evaluate(model, atoms)
    for k in (2, 3):
        big = evaluate(model, atoms.repeat((k, k, k)))
        np.testing.assert_allclose(big["energy"], k**3 * ref["energy"], rtol=TOL[dtype]["rtol"] * 10)
        np.testing.assert_allclose(big["forces"][: len(atoms)], ref["forces"], **TOL[dtype])
        np.testing.assert_allclose(
            big["stress"], ref["stress"], rtol=1e-3 if dtype == torch.float32 else 1e-8, atol=1e-5
        )


def test_forces_are_minus_gradient_fd() -> None:
    model = small_model(torch.float64)
    atoms = random_atoms(10, seed=5)
    out = evaluate(model, atoms)
    h = 1e-5
    rng = np.random.default_rng(1)
    for _ in range(6):
        i, a = int(rng.integers(len(atoms))), int(rng.integers(3))
        plus, minus = atoms.copy(), atoms.copy()
        plus.positions[i, a] += h
        minus.positions[i, a] -= h
        fd = -(evaluate(model, plus)["energy"][0] - evaluate(model, minus)["energy"][0]) / (2 * h)
        assert out["forces"][i, a] == pytest.approx(fd, rel=1e-6, abs=1e-8)


def test_stress_is_strain_derivative_fd() -> None:
    model = small_model(torch.float64)
    atoms = random_atoms(10, cell=[[5.0, 0.4, 0.0], [0.0, 5.3, 0.3], [0.2, 0.0, 5.8]], seed=6)
    out = evaluate(model, atoms)
    vol = atoms.get_volume()
    h = 1e-5
    for a, b in [(0, 0), (1, 2), (2, 1), (0, 2), (2, 2)]:
        e = []
        for sgn in (1, -1):
            eps = np.zeros((3, 3))
            eps[a, b] += sgn * h / 2
            eps[b, a] += sgn * h / 2
            strained = atoms.copy()
            strained.set_cell(atoms.cell.array @ (np.eye(3) + eps), scale_atoms=True)
            e.append(evaluate(model, strained)["energy"][0])
        fd = (e[0] - e[1]) / (2 * h) / vol  # ASE sign: σ = (1/V) ∂E/∂ε
        assert out["stress"][0, a, b] == pytest.approx(fd, rel=1e-5, abs=1e-9)


def test_strict_locality(dtype) -> None:
    model = small_model(dtype)
    rc = model.r_max
    atoms = random_atoms(9, cell=np.diag([4.0, 4.0, 4.0]), pbc=False, seed=7, min_dist=1.0)
    atoms.pbc = False
    centre = atoms.positions[0]
    # one extra atom that atom 0 cannot see, placed at two different far positions
    far_a = centre + np.array([rc + 4.0, 0.3, -0.2])
    far_b = centre + np.array([-0.5, rc + 2.5, rc + 1.0])
    near = centre + np.array([0.0, 0.0, rc - 1.2])
    from ase import Atoms

    def with_extra(p):
        return atoms + Atoms("N", positions=[p])

    e_a = evaluate(model, with_extra(far_a))["atomic_energy"][0]
    e_b = evaluate(model, with_extra(far_b))["atomic_energy"][0]
    e_none = evaluate(model, atoms)["atomic_energy"][0]
    np.testing.assert_allclose(e_a, e_b, **TOL[dtype])
    np.testing.assert_allclose(e_a, e_none, **TOL[dtype])
    # an atom within r_max does change E_0 (the test can fail)
    assert abs(evaluate(model, with_extra(near))["atomic_energy"][0] - e_none) > 1e-5


def test_smooth_at_cutoff() -> None:
    model = small_model(torch.float64)
    rc = model.r_max

    def dimer(r: float):
        from ase import Atoms

        a = Atoms("HNH", positions=[[0, 0, 0], [0.0, 1.0, 0.0], [r, 0.0, 0.0]], pbc=False)
        return evaluate(model, a)

    e_far = dimer(rc + 0.2)
    de, df = [], []
    for d in (1e-2, 1e-3):
        inside = dimer(rc - d)
        de.append(abs(inside["energy"][0] - e_far["energy"][0]))
        df.append(np.abs(inside["forces"] - e_far["forces"]).max())
    # the envelope's value, slope and curvature vanish at r_max: E ~ d³, F ~ d²
    assert de[0] < 1e-4 and df[0] < 1e-2
    assert np.log10(de[0] / de[1]) > 2.5 and np.log10(df[0] / df[1]) > 1.5
    np.testing.assert_allclose(dimer(rc + 1e-9)["energy"], e_far["energy"], atol=1e-12)


def test_batch_equals_one_by_one(dtype) -> None:
    model = small_model(dtype)
    frames = [random_atoms(n, seed=10 + n) for n in (7, 11, 9)]
    frames[1].pbc = False
    graphs = [atoms_to_graph(a, model.type_names, model.r_max, dtype) for a in frames]
    out = model(collate(graphs))
    start = 0
    for g in graphs:
        single = model(g)
        n = len(g["pos"])
        torch.testing.assert_close(out["forces"][start : start + n], single["forces"], **TOL[dtype])
        start += n
    torch.testing.assert_close(out["energy"], torch.cat([model(g)["energy"] for g in graphs]), **TOL[dtype])


def test_chunked_inference_equals_full(dtype) -> None:
    model = small_model(dtype)
    atoms = random_atoms(20, seed=11)
    g = atoms_to_graph(atoms, model.type_names, model.r_max, dtype)
    full = model(g)
    model.max_edges_per_chunk = 37
    chunked = model(g)
    for key in ("energy", "forces", "stress", "atomic_energy"):
        torch.testing.assert_close(chunked[key], full[key], **TOL[dtype])


def test_training_mode_forces_are_differentiable() -> None:
    model = small_model(torch.float64).train()
    g = atoms_to_graph(random_atoms(8, seed=12), model.type_names, model.r_max, torch.float64)
    out = model(g)
    loss = out["forces"].pow(2).sum() + out["energy"].sum()
    loss.backward()
    grads = [p.grad for p in model.two_body.parameters()]
    assert all(gr is not None and torch.isfinite(gr).all() and gr.abs().sum() > 0 for gr in grads)


# ---------------------------------------------------------------- graphs without edges
def test_lone_atom_has_its_shift_and_no_force(dtype) -> None:
    from ase import Atoms

    model = small_model(dtype)  # shifts (-1.5, -3.0) for (H, N)
    for symbol, shift in (("H", -1.5), ("N", -3.0)):
        for pbc, cell in ((False, None), (True, np.eye(3) * 20.0)):
            atoms = Atoms(symbol, positions=[[0.3, -0.2, 1.0]], cell=cell, pbc=pbc)
            out = evaluate(model, atoms)
            assert out["energy"][0] == pytest.approx(shift, abs=1e-6)
            assert out["atomic_energy"].tolist() == pytest.approx([shift], abs=1e-6)
            assert np.all(out["forces"] == 0.0) and np.all(out["stress"] == 0.0)
            assert np.all(out["virial"] == 0.0)


def test_isolated_atom_beside_a_molecule_adds_only_its_shift(dtype) -> None:
    from ase import Atoms

    model = small_model(dtype)
    mol = Atoms("NHHH", positions=[[0, 0, 0], [1.0, 0, 0], [-0.3, 0.95, 0], [-0.3, -0.3, 0.9]])
    lone = Atoms("N", positions=[[12.0, 0, 0]])  # far beyond r_max = 3.5 Å
    both = evaluate(model, mol + lone)
    parts = [evaluate(model, mol), evaluate(model, lone)]
    tol = TOL[dtype]
    np.testing.assert_allclose(both["energy"], parts[0]["energy"] + parts[1]["energy"], **tol)
    np.testing.assert_allclose(both["forces"][:4], parts[0]["forces"], **tol)
    assert np.all(both["forces"][4] == 0.0)
    # several atoms, all farther apart than r_max: the sum of their shifts
    gas = Atoms("HNH", positions=[[0, 0, 0], [5, 0, 0], [0, 6, 0]])
    assert evaluate(model, gas)["energy"][0] == pytest.approx(-6.0, abs=1e-6)
    # batched with a molecule: each frame as alone
    g = [atoms_to_graph(a, model.type_names, model.r_max, dtype) for a in (lone, mol)]
    out = model(collate(g))
    np.testing.assert_allclose(out["energy"].detach().double().numpy(), [-3.0, parts[0]["energy"][0]], **tol)


def test_structure_without_atoms_is_a_clear_error() -> None:
    from ase import Atoms

    from legato.errors import LegatoError

    model = small_model(torch.float64)
    with pytest.raises(LegatoError, match="the structure has no atoms"):
        evaluate(model, Atoms())


@pytest.mark.parametrize("graph_dtype", [torch.float32, torch.float64])
def test_graph_dtype_is_cast_to_the_model_dtype(dtype, graph_dtype) -> None:
    model = small_model(dtype)
    atoms = random_atoms(8, seed=4)
    ref = evaluate(model, atoms)
    out = model(atoms_to_graph(atoms, model.type_names, model.r_max, graph_dtype))
    assert out["forces"].dtype == dtype and out["energy"].dtype == dtype
    tol = TOL[torch.float32 if torch.float32 in (dtype, graph_dtype) else torch.float64]
    np.testing.assert_allclose(out["energy"].detach().double().numpy(), ref["energy"], **tol)
    np.testing.assert_allclose(out["forces"].detach().double().numpy(), ref["forces"], **tol)
