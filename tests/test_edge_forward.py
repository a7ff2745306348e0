"""``Allegro.edge_forward``: the interface MD engines with their own neighbour lists call
(the LAMMPS pair style, the AOTInductor package). Forces and virial assembled from its edge
gradients must equal the model's own."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import random_atoms, small_model

from legato.data.graph import atoms_to_graph
from legato.models import export_torchscript


def _edges(g: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    src, dst = g["edge_index"]
    vec = g["pos"][dst] - g["pos"][src] + g["edge_cell_shift"] @ g["cell"].reshape(3, 3)
    return vec, src, g["species"][dst], g["species"]


def _assemble(vec, center, grad, n_atoms, neighbor):
    forces = torch.zeros(n_atoms, 3, dtype=grad.dtype)
    forces.index_add_(0, center, grad)
    forces.index_add_(0, neighbor, -grad)
    virial = -(vec.unsqueeze(2) * grad.unsqueeze(1)).sum(0)
    return forces, virial


@pytest.mark.parametrize("scripted", [False, True], ids=["eager", "torchscript"])
def test_edge_forward_matches_model_triclinic(dtype, scripted, tmp_path) -> None:
    model = small_model(dtype)
    cell = np.array([[7.0, 0.0, 0.0], [1.5, 6.5, 0.0], [-0.8, 1.1, 6.8]])
    atoms = random_atoms(16, cell=cell, seed=5)
    g = atoms_to_graph(atoms, model.type_names, model.r_max, dtype)
    ref = model(g)
    runner = model
    if scripted:
        export_torchscript(model, tmp_path / "m.pth")
        runner = torch.jit.load(tmp_path / "m.pth")
    vec, center, nspec, cspec = _edges(g)
    atomic, grad = runner.edge_forward(vec, center, nspec, cspec)
    forces, virial = _assemble(vec, center, grad, len(atoms), g["edge_index"][1])
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-11)
    torch.testing.assert_close(atomic, ref["atomic_energy"].detach(), **tol)
    torch.testing.assert_close(forces, ref["forces"].detach(), **tol)
    torch.testing.assert_close(virial, ref["virial"].detach().reshape(3, 3), **tol)


def test_edge_forward_rejects_other_dtype(tmp_path) -> None:
    model = small_model(torch.float32)
    export_torchscript(model, tmp_path / "m.pth")
    scripted = torch.jit.load(tmp_path / "m.pth")
    vec = torch.randn(4, 3, dtype=torch.float64)
    idx = torch.zeros(4, dtype=torch.long)
    for runner in (model, scripted):
        with pytest.raises(
            (RuntimeError, torch.jit.Error), match="computes in float32 but the edge vectors are float64"
        ):
            runner.edge_forward(vec, idx, idx, torch.zeros(1, dtype=torch.long))
