"""Bad input across the CLI and the API: one clear line, a non-zero exit, no traceback,
and nothing already on disk changed.

Each CLI case runs ``legato.cli.main.main`` with a wrong value a user could plausibly type;
the folder's files are fingerprinted before and after, so a case that fails *after*
overwriting something fails the test. The installed script itself is exercised in
``test_cli_installed.py``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from ase.calculators.singlepoint import SinglePointCalculator
from conftest import random_atoms, small_model
from train_utils import SMALL_MODEL

import legato
from legato.cli.main import main
from legato.errors import LegatoError


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A folder with the files the cases point at: a small model, its deployed and
    truncated copies, labelled H/N frames, one with a NaN force, configs."""
    import ase.io

    d = tmp_path_factory.mktemp("bad_inputs")
    model = small_model(torch.float64, l_max=1)
    legato.save_model(model, d / "model.pt")
    assert main(["deploy", str(d / "model.pt"), str(d / "deployed.pt")]) == 0
    blob = (d / "model.pt").read_bytes()
    (d / "truncated.pt").write_bytes(blob[: len(blob) // 2])
    frames = []
    for k in range(6):
        atoms = random_atoms(12, seed=k)
        rng = np.random.default_rng(k)
        atoms.calc = SinglePointCalculator(atoms, energy=-10.0 - k, forces=rng.normal(size=(12, 3)))
        atoms.info["split"] = ("train", "train", "train", "validation", "test", "test")[k]
        frames.append(atoms)
    ase.io.write(d / "frames.extxyz", frames, format="extxyz")
    frames[1].calc.results["forces"][3, 1] = np.nan
    ase.io.write(d / "nan.extxyz", frames, format="extxyz")
    (d / "exists.pt").write_bytes(b"precious")
    train = {
        "run_dir": str(d / "run"),
        "data": {"path": str(d / "frames.extxyz"), "n_train": 3, "n_val": 1},
        "model": dict(SMALL_MODEL),
        "training": {"max_epochs": 1, "batch_size": 2, "progress": False},
    }
    (d / "train.yaml").write_text(yaml.safe_dump(train))
    md = {"structure": str(d / "frames.extxyz"), "model": str(d / "model.pt"), "steps": 10}
    (d / "md.yaml").write_text(yaml.safe_dump(md))
    return {"dir": d, "train": train, "md": md}


def _snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _write(files: dict, name: str, base: str, **change) -> str:
    """A variant of the train or md config with nested keys changed (``model__r_max=...``)."""
    data = yaml.safe_load(yaml.safe_dump(files[base]))
    for key, value in change.items():
        *path, last = key.split("__")
        node = data
        for part in path:
            node = node.setdefault(part, {})
        node[last] = value
    path = files["dir"] / name
    path.write_text(yaml.safe_dump(data))
    return str(path)


def _yaml_text(files: dict, name: str, text: str) -> str:
    path = files["dir"] / name
    path.write_text(text)
    return str(path)


def _tfail(files: dict, *options: str) -> list[str]:
    d = files["dir"]
    return [
        "tfail",
        str(d / "model.pt"),
        "--structure",
        str(d / "frames.extxyz"),
        "--out",
        str(d / "tf"),
        *options,
    ]


# (id, argv builder, expected fragment of the error line)
CASES = [
    ("train: missing config", lambda f: ["train", str(f["dir"] / "nope.yaml")], "config file not found"),
    (
        "train: YAML syntax error keeps line and column",
        lambda f: ["train", _yaml_text(f, "syntax.yaml", "model:\n  r_max: [1, 2\nrun_dir: x\n")],
        "line 3, column",
    ),
    ("train: config is a folder", lambda f: ["train", str(f["dir"])], "is a folder"),
    (
        "train: negative r_max",
        lambda f: ["train", _write(f, "t1.yaml", "train", model__r_max=-1.0)],
        "'model.r_max'",
    ),
    (
        "train: non-numeric r_max",
        lambda f: ["train", _write(f, "t2.yaml", "train", model__r_max="four")],
        "'model.r_max'",
    ),
    (
        "train: NaN r_max",
        lambda f: [
            "train",
            _yaml_text(f, "t3.yaml", yaml.safe_dump(f["train"]).replace("r_max: 4.0", "r_max: .nan")),
        ],
        "finite",
    ),
    (
        "train: infinite r_max",
        lambda f: [
            "train",
            _yaml_text(f, "t4.yaml", yaml.safe_dump(f["train"]).replace("r_max: 4.0", "r_max: .inf")),
        ],
        "finite",
    ),
    (
        "train: num_bessel 0",
        lambda f: ["train", _write(f, "t5.yaml", "train", model__num_bessel=0)],
        "'model.num_bessel'",
    ),
    (
        "train: avg_num_neighbors 0",
        lambda f: ["train", _write(f, "t6.yaml", "train", model__avg_num_neighbors=0)],
        "'model.avg_num_neighbors'",
    ),
    (
        "train: num_layers 1.7",
        lambda f: ["train", _write(f, "t7.yaml", "train", model__num_layers=1.7)],
        "'model.num_layers'",
    ),
    (
        "train: l_max 'one'",
        lambda f: ["train", _write(f, "t8.yaml", "train", model__l_max="one")],
        "'model.l_max'",
    ),
    (
        "train: misspelt key",
        lambda f: ["train", _write(f, "t9.yaml", "train", training__batchsize=2)],
        "did you mean 'batch_size'",
    ),
    (
        "train: --max-epochs -1",
        lambda f: ["train", str(f["dir"] / "train.yaml"), "--max-epochs", "-1"],
        "--max-epochs",
    ),
    (
        "train: --max-time-minutes 0",
        lambda f: ["train", str(f["dir"] / "train.yaml"), "--max-time-minutes", "0"],
        "--max-time-minutes",
    ),
    ("train: --threads 0", lambda f: ["train", str(f["dir"] / "train.yaml"), "--threads", "0"], "--threads"),
    (
        "evaluate: --batch-size 0",
        lambda f: [
            "evaluate",
            str(f["dir"] / "model.pt"),
            str(f["dir"] / "frames.extxyz"),
            "--batch-size",
            "0",
        ],
        "--batch-size",
    ),
    (
        "evaluate: truncated model file",
        lambda f: ["evaluate", str(f["dir"] / "truncated.pt"), str(f["dir"] / "frames.extxyz")],
        "truncated",
    ),
    (
        "evaluate: deployed TorchScript file as a model",
        lambda f: ["evaluate", str(f["dir"] / "deployed.pt"), str(f["dir"] / "frames.extxyz")],
        "deployed TorchScript",
    ),
    (
        "evaluate: text file as a model",
        lambda f: ["evaluate", str(f["dir"] / "train.yaml"), str(f["dir"] / "frames.extxyz")],
        "not a file written by legato",
    ),
    (
        "evaluate: NaN label in the data",
        lambda f: ["evaluate", str(f["dir"] / "model.pt"), str(f["dir"] / "nan.extxyz")],
        "frame 1 has a non-finite forces",
    ),
    (
        "evaluate: missing data file",
        lambda f: ["evaluate", str(f["dir"] / "model.pt"), str(f["dir"] / "none.extxyz")],
        "not found",
    ),
    (
        "evaluate: --json exists",
        lambda f: [
            "evaluate",
            str(f["dir"] / "model.pt"),
            str(f["dir"] / "frames.extxyz"),
            "--json",
            str(f["dir"] / "exists.pt"),
        ],
        "refusing to overwrite",
    ),
    (
        "deploy: output exists",
        lambda f: ["deploy", str(f["dir"] / "model.pt"), str(f["dir"] / "exists.pt")],
        "refusing to overwrite",
    ),
    (
        "md: inverted temperature window",
        lambda f: ["md", _write(f, "m1.yaml", "md", checks__temperature_window_K=[300.0, 100.0])],
        "0 <= LO < HI",
    ),
    (
        "md: 0 K with a thermostat",
        lambda f: ["md", _write(f, "m2.yaml", "md", temperature_K=0.0)],
        "needs a temperature above 0 K",
    ),
    (
        "md: NaN time step",
        lambda f: ["md", _yaml_text(f, "m3.yaml", yaml.safe_dump(f["md"]) + "timestep_fs: .nan\n")],
        "'timestep_fs'",
    ),
    (
        "md: unknown key",
        lambda f: ["md", _write(f, "m4.yaml", "md", temperature=200.0)],
        "unknown key 'temperature'",
    ),
    (
        "tfail: NaN temperature",
        lambda f: _tfail(f, "--temperature-K", "nan"),
        "temperature must be",
    ),
    (
        "tfail: bad size",
        lambda f: _tfail(f, "--sizes", "abc"),
        "bad size 'abc'",
    ),
    (
        "tfail: frame index out of range",
        lambda f: _tfail(f, "--structure-index", "7"),
        "out of range",
    ),
    (
        "sharpness: --samples 0",
        lambda f: [
            "sharpness",
            str(f["dir"] / "model.pt"),
            str(f["dir"] / "frames.extxyz"),
            "--samples",
            "0",
        ],
        "--samples",
    ),
    (
        "landscape: --points 1",
        lambda f: [
            "landscape",
            str(f["dir"] / "model.pt"),
            str(f["dir"] / "frames.extxyz"),
            "--points",
            "1",
            "--out",
            str(f["dir"] / "ls"),
        ],
        "--points",
    ),
    (
        "data liquid: zero molecules",
        lambda f: [
            "data",
            "liquid",
            "--molecules",
            "0",
            "--density-g-cm3",
            "0.7",
            "--out",
            str(f["dir"] / "b.xyz"),
        ],
        "at least 1",
    ),
    (
        "data replicate: k = 0",
        lambda f: [
            "data",
            "replicate",
            str(f["dir"] / "frames.extxyz"),
            "--k",
            "0",
            "--out",
            str(f["dir"] / "r.xyz"),
        ],
        "at least 1",
    ),
    (
        "data label: unknown calculator",
        lambda f: [
            "data",
            "label",
            str(f["dir"] / "frames.extxyz"),
            str(f["dir"] / "l.xyz"),
            "--calculator",
            "foo",
        ],
        "unknown calculator",
    ),
    (
        "study: missing config",
        lambda f: ["study", str(f["dir"] / "nope.yaml"), "--out", str(f["dir"] / "st")],
        "not found",
    ),
]


@pytest.mark.parametrize("argv_of, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_cli_bad_input_is_one_error_line(files, capsys, argv_of, expected) -> None:
    argv = argv_of(files)
    capsys.readouterr()
    before = _snapshot(files["dir"])
    code = main(argv)
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert code != 0, f"exit 0 for legato {' '.join(argv)}"
    assert "Traceback" not in err
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, err
    assert expected in errors[0], errors[0]
    after = _snapshot(files["dir"])
    changed = [name for name, digest in before.items() if after.get(name) != digest]
    assert not changed, f"changed or removed by a failed command: {changed}"


def test_enough_cases() -> None:
    assert len(CASES) + len(API_CASES) >= 30


def _zero_atoms(files):
    from ase import Atoms

    calc = legato.LegatoCalculator(str(files["dir"] / "model.pt"), device="cpu")
    atoms = Atoms(cell=[5, 5, 5], pbc=True)
    atoms.calc = calc
    atoms.get_potential_energy()


def _cuda(files):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    legato.load_model(str(files["dir"] / "model.pt"), map_location="cuda")


def _bad_constructor(files):
    from legato.models import Allegro

    Allegro(type_names=["H", "N"], r_max=-1.0, l_max=1)


def _nan_frames(files):
    legato.data.read_frames(files["dir"] / "nan.extxyz")


API_CASES = [
    ("model on zero atoms", _zero_atoms, "no atoms"),
    ("load_model on cuda without a GPU", _cuda, "CUDA is not available"),
    ("Allegro(r_max=-1)", _bad_constructor, "'r_max'"),
    ("read_frames with a NaN label", _nan_frames, "non-finite forces"),
]


@pytest.mark.parametrize("call, expected", [c[1:] for c in API_CASES], ids=[c[0] for c in API_CASES])
def test_api_bad_input_is_a_legato_error(files, call, expected) -> None:
    with pytest.raises(LegatoError, match=expected):
        call(files)
