"""A user's first hour with evaluate / sharpness / landscape: --subset test, bad counts and
unwritable outputs are one error line before any work, and JSON outputs are valid JSON."""

from __future__ import annotations

import json

import pytest
from train_utils import make_emt_dataset, small_config

from legato.cli.main import main


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One run split by the frames' 'split' labels, one split at random (4 frames left out)."""
    from legato.train.trainer import train

    root = tmp_path_factory.mktemp("h1_analysis")
    data = make_emt_dataset(root / "emt.extxyz", n_frames=12)  # 8 train, 2 validation, 2 test labels
    labelled = small_config(data, root / "labelled", max_epochs=1)
    labelled["data"] = {"path": str(data), "split_key": "split"}
    train(labelled)
    rand = small_config(data, root / "random", max_epochs=1)
    rand["data"].update({"n_train": 6, "n_val": 2})
    train(rand)
    return root, data


def error_line(capsys, code: int) -> str:
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err, err
    return err.strip()


def test_evaluate_subset_test(runs, capsys):
    root, data = runs
    for run, n in (("labelled", 2), ("random", 4)):
        model = root / run / "best_model.pt"
        assert main(["evaluate", str(model), str(data), "--subset", "test", "--no-progress"]) == 0
        assert f"on {n} frames" in capsys.readouterr().out
    # a run that used every frame has no test frames: one line
    full = small_config(data, root / "full", max_epochs=1)
    full["data"].update({"n_train": 10, "n_val": 2})
    from legato.train.trainer import train

    train(full)
    code = main(["evaluate", str(root / "full" / "best_model.pt"), str(data), "--subset", "test"])
    assert "--subset test: no frames left out of training and validation" in error_line(capsys, code)


def test_evaluate_json_is_valid_and_checked_first(runs, tmp_path, readonly_dir, capsys):
    root, data = runs
    model = root / "labelled" / "best_model.pt"
    out = tmp_path / "m.json"
    assert main(["evaluate", str(model), str(data), "--json", str(out), "--no-progress"]) == 0
    assert f"wrote {out}" in capsys.readouterr().out

    def refuse(name):
        raise ValueError(name)

    assert json.loads(out.read_text(), parse_constant=refuse)["n_frames"] == 12
    # outputs are checked before the model is read (here it does not even exist)
    missing = str(tmp_path / "missing.pt")
    code = main(["evaluate", missing, str(data), "--json", str(readonly_dir / "m.json")])
    assert error_line(capsys, code).startswith("error: cannot write to folder of output file")
    code = main(["evaluate", missing, str(data), "--json", str(out)])
    assert error_line(capsys, code) == f"error: {out} exists; refusing to overwrite it"


@pytest.mark.parametrize(
    "command, expected",
    [
        (["evaluate", "{model}", "{data}", "--batch-size", "0"], "error: --batch-size must be >= 1 (got 0)"),
        (["sharpness", "{model}", "{data}", "--samples", "0"], "error: --samples must be >= 1 (got 0)"),
        (
            ["sharpness", "{model}", "{data}", "--batch-size", "-2"],
            "error: --batch-size must be >= 1 (got -2)",
        ),
        (["sharpness", "{model}", "{data}", "--max-frames", "-1"], "error: --max-frames must be >= 0"),
        (["sharpness", "{model}", "{data}", "--rho", "0"], "error: --rho must be > 0 (got 0.0)"),
        (["sharpness", "{model}", "{data}", "--rho", "nan"], "error: --rho must be > 0 (got nan)"),
        (
            ["sharpness", "{model}", "{data}", "--json", "{ro}/s.json"],
            "error: cannot write to folder of output",
        ),
        (["landscape", "{model}", "{data}", "--points", "1"], "error: --points must be >= 2 (got 1)"),
        (["landscape", "{model}", "{data}", "--scale", "0"], "error: --scale must be a positive number"),
        (["landscape", "{model}", "{data}", "--out", "{ro}/ls"], "error: cannot write to folder of output"),
        (["landscape", "{model}", "{data}", "--batch-size", "0"], "error: --batch-size must be >= 1"),
        (["landscape", "{data}"], "error: give at least one MODEL and the DATA file"),
    ],
)
def test_bad_options_are_one_line_before_any_work(tmp_path, readonly_dir, capsys, command, expected):
    # neither the model nor the data exist: every check here comes before reading them
    fill = {"model": str(tmp_path / "m.pt"), "data": str(tmp_path / "d.xyz"), "ro": str(readonly_dir)}
    code = main([part.format(**fill) for part in command])
    assert error_line(capsys, code).startswith(expected)


def test_sharpness_json_with_one_sample_is_valid_json(runs, tmp_path, capsys):
    root, data = runs
    out = tmp_path / "s.json"
    model = str(root / "labelled" / "best_model.pt")
    args = ["sharpness", model, str(data), "--samples", "1", "--max-frames", "2", "--json", str(out)]
    assert main([*args, "--no-progress"]) == 0
    res = json.loads(out.read_text(), parse_constant=lambda name: pytest.fail(f"{name} in JSON"))
    assert res["stderr"] is None and res["samples"] == 1 and res["n_frames"] == 2
