"""``legato deploy --format aoti``: an AOTInductor package of ``edge_forward`` that runs
without legato, takes any edge and atom count, matches the eager model, and refuses input of
the wrong dtype instead of returning garbage."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import small_model
from test_cli_installed import legato_script, run

import legato
from legato.errors import LegatoError
from legato.models.aoti import example_edges, export_aoti


@pytest.fixture(scope="module")
def float32_package(tmp_path_factory) -> tuple[Path, torch.nn.Module]:
    """One package built the way users build it: the installed script in a subprocess."""
    folder = tmp_path_factory.mktemp("aoti")
    model = small_model(torch.float32)
    legato.save_model(model, folder / "model.pt")
    res = run(
        [legato_script(), "deploy", "--format", "aoti", "model.pt", "model.pt2"], cwd=folder, timeout=900
    )
    assert res.returncode == 0, res.stderr
    assert "checked against the eager model" in res.stdout
    return folder / "model.pt2", model


def test_package_runs_without_legato_and_matches_eager(float32_package, tmp_path) -> None:
    path, model = float32_package
    inputs = {}
    for n in (7, 50):  # atom counts the export never saw (it traced 24)
        inputs[n] = example_edges(model, n_atoms=n, seed=n)
    torch.save(inputs, tmp_path / "inputs.pt")
    code = f"""
import sys, json
sys.modules['legato'] = None
sys.modules['e3nn'] = None
import torch
runner = torch._inductor.aoti_load_package({str(path)!r})
meta = json.loads(runner.get_metadata()['legato_metadata.json'])
inputs = torch.load({str(tmp_path / "inputs.pt")!r})
torch.save({{n: runner(*args) for n, args in inputs.items()}}, {str(tmp_path / "out.pt")!r})
print(meta['dtype'], meta['type_names'], meta['kind'])
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "float32 ['H', 'N'] aoti" in res.stdout
    out = torch.load(tmp_path / "out.pt")
    for n, args in inputs.items():
        ref = model.edge_forward(*args)
        for got, want in zip(out[n], ref):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_float64_input_to_float32_package_fails_loudly(float32_package) -> None:
    path, model = float32_package
    runner = torch._inductor.aoti_load_package(str(path))
    vec, center, nspec, cspec = example_edges(model, n_atoms=10)
    with pytest.raises(RuntimeError, match="unmatched dtype"):
        runner(vec.double(), center, nspec, cspec)


def test_deploy_refuses_bad_output_names(float32_package, tmp_path) -> None:
    path, _ = float32_package
    model_file = path.parent / "model.pt"
    res = run([legato_script(), "deploy", "--format", "aoti", str(model_file), str(tmp_path / "m.pth")])
    assert res.returncode == 2 and "must end in .pt2" in res.stderr and "Traceback" not in res.stderr
    res = run([legato_script(), "deploy", "--format", "aoti", str(model_file), str(path)])
    assert res.returncode == 2 and "refusing to overwrite" in res.stderr


@pytest.mark.slow
def test_float64_package_matches_eager(tmp_path) -> None:
    model = small_model(torch.float64)
    errors = export_aoti(model, tmp_path / "m.pt2")
    assert max(errors.values()) < 1e-10
    runner = torch._inductor.aoti_load_package(str(tmp_path / "m.pt2"))
    args = example_edges(model, n_atoms=40, seed=4)
    for got, want in zip(runner(*args), model.edge_forward(*args)):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    vec = args[0].float()
    with pytest.raises(RuntimeError, match="unmatched dtype"):
        runner(vec, *args[1:])


def test_export_refuses_a_package_that_disagrees(monkeypatch, tmp_path) -> None:
    import legato.models.aoti as aoti

    monkeypatch.setattr(aoti, "check_package", lambda *a, **k: {"atomic_energy": 0.5})
    monkeypatch.setattr(aoti.torch._inductor, "aoti_compile_and_package", lambda *a, **k: None)
    with pytest.raises(LegatoError, match="disagrees with the model"):
        export_aoti(small_model(torch.float32), tmp_path / "m.pt2")
    assert not (tmp_path / "m.pt2").exists()
