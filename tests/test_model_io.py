"""Save/load, TorchScript export, the ASE calculator and bad input."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from conftest import random_atoms, small_model

import legato
from legato import LegatoCalculator, LegatoError
from legato.data import atoms_to_graph
from legato.models import export_torchscript


def test_save_load_roundtrip(tmp_path, dtype) -> None:
    model = small_model(dtype)
    path = tmp_path / "m.pt"
    legato.save_model(model, path, extra={"note": "x"})
    loaded = legato.load_model(path)
    assert next(loaded.parameters()).dtype == dtype
    assert loaded.type_names == model.type_names and loaded.r_max == model.r_max
    assert loaded.extra == {"note": "x"}
    g = atoms_to_graph(random_atoms(9, seed=1), model.type_names, model.r_max, dtype)
    torch.testing.assert_close(loaded(g)["forces"], model(g)["forces"], rtol=0, atol=0)
    blob = torch.load(path, weights_only=False)
    assert blob["legato_version"] == legato.__version__ and blob["dtype"] in ("float32", "float64")


def test_files_with_legacy_constant_buffers_load(tmp_path) -> None:
    """Files written before the channels-innermost layout also stored the coupling tensors
    and linear index buffers; those constants are rebuilt, so such files still load."""
    model = small_model(torch.float64)
    state = model.state_dict()
    assert not any(k.endswith(("coupling", "coupling_t", "comp_index")) for k in state)
    legacy = dict(state)
    for k, tp in enumerate(model.tps):
        legacy[f"tps.{k}.coupling"] = torch.zeros(tp.d1 * tp.d2, tp.dout, dtype=torch.float64)
    for k in range(len(model.linears)):
        legacy[f"linears.{k}.comp_index"] = torch.arange(3)
        legacy[f"linears.{k}.path_index"] = torch.arange(3)
    torch.save(
        {**torch.load(_saved(model, tmp_path), weights_only=False), "state_dict": legacy}, tmp_path / "old.pt"
    )
    loaded = legato.load_model(tmp_path / "old.pt")
    g = atoms_to_graph(random_atoms(9, seed=2), model.type_names, model.r_max, torch.float64)
    torch.testing.assert_close(loaded(g)["forces"], model(g)["forces"], rtol=0, atol=0)


def _saved(model, tmp_path):
    path = tmp_path / "new.pt"
    legato.save_model(model, path)
    return path


def test_load_rejects_non_model(tmp_path) -> None:
    bad = tmp_path / "x.pt"
    bad.write_text("not a model")
    with pytest.raises(LegatoError, match="it is not a file written by legato"):
        legato.load_model(bad)
    with pytest.raises(LegatoError, match="not found"):
        legato.load_model(tmp_path / "missing.pt")


def test_torchscript_equals_eager_without_legato(tmp_path, dtype) -> None:
    model = small_model(dtype)
    path = tmp_path / "deployed.pt"
    export_torchscript(model, path)
    g = atoms_to_graph(random_atoms(10, seed=2), model.type_names, model.r_max, dtype)
    ref = model(g)
    data_path = tmp_path / "graph.pt"
    torch.save(g, data_path)
    # a fresh interpreter where importing legato or e3nn is impossible
    code = f"""
import sys, json
sys.modules['legato'] = None
sys.modules['e3nn'] = None
import torch
extra = {{'legato_metadata.json': ''}}
m = torch.jit.load({str(path)!r}, _extra_files=extra)
meta = json.loads(extra['legato_metadata.json'])
g = torch.load({str(data_path)!r})
out = m(g)
torch.save({{k: v.detach() for k, v in out.items()}}, {str(tmp_path / "out.pt")!r})
print(meta['type_names'], meta['r_max'])
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "['H', 'N'] 3.5" in res.stdout
    out = torch.load(tmp_path / "out.pt")
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
    for key in ("energy", "forces", "stress", "atomic_energy"):
        torch.testing.assert_close(out[key], ref[key].detach(), **tol)


def test_calculator_matches_model_and_fd(tmp_path) -> None:
    model = small_model(torch.float64)
    path = tmp_path / "m.pt"
    legato.save_model(model, path)
    atoms = random_atoms(8, seed=3)
    atoms.calc = LegatoCalculator(path, device="cpu")
    e = atoms.get_potential_energy()
    assert e == pytest.approx(atoms.get_potential_energies().sum(), rel=1e-12)
    assert atoms.get_potential_energy(force_consistent=True) == pytest.approx(e)
    f = atoms.get_forces()
    np.testing.assert_allclose(f, atoms.calc.calculate_numerical_forces(atoms, d=1e-5), atol=1e-6)
    s = atoms.get_stress()
    np.testing.assert_allclose(s, atoms.calc.calculate_numerical_stress(atoms, d=1e-5), atol=1e-7)
    cluster = atoms.copy()
    cluster.pbc = False
    cluster.calc = LegatoCalculator(model)
    assert np.isfinite(cluster.get_potential_energy())


def test_unknown_element_names_it_and_model_types() -> None:
    model = small_model(torch.float64)
    atoms = random_atoms(6, symbols=("H", "O"), seed=4)
    with pytest.raises(LegatoError, match=r"O not known to the model \(model types: H, N\)"):
        atoms_to_graph(atoms, model.type_names, model.r_max)


def test_non_finite_positions_error() -> None:
    atoms = random_atoms(6, seed=5)
    atoms.positions[2, 1] = np.nan
    with pytest.raises(LegatoError, match="non-finite"):
        atoms_to_graph(atoms, ["H", "N"], 3.5)


def test_close_atoms_warn() -> None:
    atoms = random_atoms(6, seed=6)
    atoms.positions[1] = atoms.positions[0] + [0.3, 0.0, 0.0]
    with pytest.warns(UserWarning, match="closer than 0.5"):
        atoms_to_graph(atoms, ["H", "N"], 3.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        atoms_to_graph(random_atoms(6, seed=6), ["H", "N"], 3.5)


def test_paper_model_on_shared_box(shared_box) -> None:
    from legato.data import read_frames
    from legato.models import Allegro

    atoms = read_frames(shared_box)[0]
    assert len(atoms) == 432 and atoms.get_chemical_formula() == "H324N108"
    model = Allegro(["H", "N"], l_max=1, avg_num_neighbors=80.0).eval()
    g = atoms_to_graph(atoms, model.type_names, model.r_max, torch.float32)
    out = model(g)
    assert torch.isfinite(out["forces"]).all()
    # the total force of a periodic system vanishes (Newton's third law, edge by edge)
    assert out["forces"].double().sum(0).abs().max() < 1e-3


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "model.pt"
    legato.save_model(small_model(torch.float32), path)
    return path


def truncated(src, dst):
    data = src.read_bytes()
    dst.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda src, p: p.write_bytes(b""), "the file is empty"),
        (lambda src, p: p.write_text("energy forces\n1 2 3\n"), "it is not a file written by legato"),
        (truncated, "the file is truncated or incomplete"),
        (lambda src, p: export_torchscript(legato.load_model(src), p), "it is a deployed TorchScript file"),
        (lambda src, p: torch.save({"weights": [1, 2]}, p), "is not a legato model file"),
        (lambda src, p: torch.save({"format": "legato-checkpoint-v1"}, p), "is a training checkpoint"),
        (lambda src, p: p.mkdir(), "is a folder, not a model file"),
    ],
    ids=["empty", "text", "truncated", "torchscript", "other-torch", "checkpoint", "folder"],
)
def test_load_model_says_what_is_wrong(saved_model, tmp_path, make, message) -> None:
    path = tmp_path / "given.pt"
    make(saved_model, path)
    with pytest.raises(LegatoError, match=message) as exc:
        legato.load_model(path)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_load_model_on_cuda_without_a_gpu(saved_model, monkeypatch, device) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(LegatoError) as exc:
        legato.load_model(saved_model, map_location=device)
    assert str(exc.value) == f"CUDA is not available on this machine (device '{device}' requested)"
    with pytest.raises(LegatoError, match="unknown device 'gpu'"):
        legato.load_model(saved_model, map_location="gpu")
    with pytest.raises(LegatoError, match="CUDA is not available on this machine"):
        LegatoCalculator(saved_model, device=device)


def test_deploy_cli_is_quiet_and_checks_its_output_first(saved_model, tmp_path, readonly_dir, capfd) -> None:
    from legato.cli.main import main

    out = tmp_path / "deployed.pth"
    assert main(["deploy", str(saved_model), str(out)]) == 0
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out.startswith(f"wrote {out} (")
    assert len(captured.out.splitlines()) == 1
    before = out.read_bytes()
    assert main(["deploy", str(saved_model), str(out)]) == 2
    assert capfd.readouterr().err == f"error: {out} exists; refusing to overwrite it\n"
    assert out.read_bytes() == before
    # an unwritable output is reported before the model is even read
    assert main(["deploy", str(tmp_path / "no_model.pt"), str(readonly_dir / "x.pth")]) == 2
    err = capfd.readouterr().err
    assert err.startswith("error: cannot write to folder of output file") and err.count("\n") == 1
    # the deployed file handed back to legato: a clear line
    assert main(["evaluate", str(out), str(tmp_path / "data.xyz")]) == 2
    assert "it is a deployed TorchScript file" in capfd.readouterr().err


def test_torchscript_and_calculator_on_a_lone_atom(saved_model, tmp_path) -> None:
    from ase import Atoms

    model = legato.load_model(saved_model)
    path = tmp_path / "deployed.pth"
    export_torchscript(model, path)
    scripted = torch.jit.load(str(path))
    atoms = Atoms("N", positions=[[1.0, 2.0, 3.0]])
    g = atoms_to_graph(atoms, model.type_names, model.r_max, torch.float32)
    out = scripted(g)
    shift = float(model.energy_shift[1])
    assert float(out["energy"][0]) == pytest.approx(shift) and bool((out["forces"] == 0).all())
    atoms.calc = LegatoCalculator(model)
    assert atoms.get_potential_energy() == pytest.approx(shift)
    assert (atoms.get_forces() == 0).all()
