"""A user's first hour with ``legato train``: bad options, unwritable or unfinished run
folders and non-finite losses are one clear line, and nothing on disk is lost."""

from __future__ import annotations

import json
import math

import pytest
import torch
import yaml
from train_utils import make_emt_dataset, small_config

from legato.cli.main import main
from legato.data import keys as K
from legato.errors import LegatoError
from legato.train import checkpoint as ckpt
from legato.train.config import parse_config
from legato.train.trainer import Trainer


@pytest.fixture(scope="module")
def emt_data(tmp_path_factory):
    return make_emt_dataset(tmp_path_factory.mktemp("emt") / "emt.extxyz", n_frames=12)


def tiny(data, run_dir, **training):
    cfg = small_config(data, run_dir, **training)
    cfg["data"].update({"n_train": 4, "n_val": 2})
    return cfg


def write_yaml(path, data):
    path.write_text(yaml.safe_dump(data))
    return path


def one_error_line(capsys, code: int, expected: str) -> str:
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert "Traceback" not in err and expected in err, err
    return err


@pytest.mark.parametrize(
    "options, expected",
    [
        (
            ["--max-epochs", "-1"],
            "error: invalid value for --max-epochs: Input should be greater than or equal",
        ),
        (["--max-epochs", "0"], "error: invalid value for --max-epochs"),
        (["--max-time-minutes", "0"], "error: invalid value for --max-time-minutes: Input should be greater"),
        (["--max-time-minutes", "-5"], "error: invalid value for --max-time-minutes"),
    ],
)
def test_bad_overrides_name_the_option(emt_data, tmp_path, capsys, options, expected):
    cfg = write_yaml(tmp_path / "c.yaml", tiny(emt_data, tmp_path / "run"))
    one_error_line(capsys, main(["train", str(cfg), *options]), expected)
    assert not (tmp_path / "run").exists()
    # the same on --resume, before the (here missing) run folder is even looked at
    one_error_line(capsys, main(["train", "--resume", str(tmp_path / "nowhere"), *options]), expected)


def test_resume_errors(tmp_path, capsys):
    one_error_line(capsys, main(["train", "--resume", str(tmp_path / "gone")]), "run folder not found")
    (tmp_path / "plain").mkdir()
    one_error_line(capsys, main(["train", "--resume", str(tmp_path / "plain")]), "not a legato run folder")


def test_unwritable_run_folder_fails_before_reading_data(tmp_path, readonly_dir, capsys):
    missing_data = tmp_path / "not_read.extxyz"  # would fail if it were read first
    cfg = write_yaml(tmp_path / "c.yaml", tiny(missing_data, readonly_dir / "run"))
    one_error_line(capsys, main(["train", str(cfg)]), f"cannot write to run folder {readonly_dir / 'run'}")


def test_failed_start_leaves_no_folders(tmp_path):
    run = tmp_path / "a" / "b" / "run"
    with pytest.raises(LegatoError, match="data file not found"):
        Trainer.create(parse_config(tiny(tmp_path / "missing.extxyz", run)))
    assert not (tmp_path / "a").exists()


def test_unfinished_run_folder_is_moved_aside_and_a_finished_one_refused(emt_data, tmp_path, capsys):
    run = tmp_path / "run"
    Trainer.create(parse_config(tiny(emt_data, run, max_epochs=1)))  # "killed" before epoch 1 ended
    assert (run / "config.yaml").is_file() and not (run / ckpt.CHECKPOINT_NAME).exists()
    # --resume cannot continue it and says what to do
    one_error_line(capsys, main(["train", "--resume", str(run)]), "has no checkpoint")
    cfg = write_yaml(tmp_path / "c.yaml", tiny(emt_data, run, max_epochs=1))
    assert main(["train", str(cfg)]) == 0
    out = capsys.readouterr().out
    aside = tmp_path / "run.incomplete1"
    assert f"moved the unfinished run folder {run} aside to {aside}" in out
    assert (aside / "config.yaml").is_file() and (aside / "split.json").is_file()
    assert (run / ckpt.CHECKPOINT_NAME).is_file() and (run / "best_model.pt").is_file()
    # a run with a checkpoint is never moved: the message points to --resume
    before = sorted(p.name for p in run.iterdir())
    one_error_line(capsys, main(["train", str(cfg)]), f"continue it with legato train --resume {run}")
    assert sorted(p.name for p in run.iterdir()) == before
    assert not (tmp_path / "run.incomplete2").exists()


def test_non_finite_validation_loss_is_an_error_and_keeps_the_checkpoint(emt_data, tmp_path):
    run = tmp_path / "run"
    trainer = Trainer.create(parse_config(tiny(emt_data, run, max_epochs=1)))
    trainer.fit()
    saved = (run / ckpt.CHECKPOINT_NAME).read_bytes()
    trainer.cfg.training.max_epochs = 3
    g = trainer.val_graphs[0]
    g[K.TOTAL_ENERGY] = torch.full_like(g[K.TOTAL_ENERGY], math.nan)
    with pytest.raises(LegatoError) as exc:
        trainer.fit()
    msg = str(exc.value)
    assert msg.startswith("the validation loss became nan in epoch 2") and "\n" not in msg
    assert f"the checkpoint of epoch 1 in {run} is intact" in msg
    assert (run / ckpt.CHECKPOINT_NAME).read_bytes() == saved
    assert len((run / "log.csv").read_text().splitlines()) == 2  # header + epoch 1


def test_non_finite_training_loss_in_the_first_epoch(emt_data, tmp_path):
    trainer = Trainer.create(parse_config(tiny(emt_data, tmp_path / "run", max_epochs=1)))
    for g in trainer.train_graphs:
        g[K.FORCES] = torch.full_like(g[K.FORCES], math.inf)
    with pytest.raises(LegatoError, match=r"the training loss became (nan|inf) in epoch 1 \(no checkpoint"):
        trainer.fit()
    assert not (tmp_path / "run" / ckpt.CHECKPOINT_NAME).exists()


def strict_json(text: str):
    def refuse(name):
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def test_summary_is_valid_json_and_last_line_names_a_written_file(emt_data, tmp_path, capsys):
    assert (
        ckpt.finite_json({"a": math.inf, "b": [math.nan, 1.5]}, indent=None)
        == '{"a": null, "b": [null, 1.5]}'
    )
    run = tmp_path / "run"
    trainer = Trainer.create(parse_config(tiny(emt_data, run, max_epochs=1)))
    summary = trainer._finish()  # stopped before any epoch: no best model, infinite best loss
    assert summary["best_val_loss"] == math.inf
    assert strict_json((run / "summary.json").read_text())["best_val_loss"] is None
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.endswith(f"model: {run / 'last_model.pt'}") and (run / "last_model.pt").is_file()
    assert not (run / "best_model.pt").exists()


@pytest.mark.parametrize(
    "yaml_value, key, expected",
    [
        ("-1.0", "r_max", "Input should be greater than 0 (got -1.0)"),
        ("four", "r_max", "Input should be a valid number (got 'four')"),
        (".nan", "r_max", "Input should be a finite number (got nan)"),
        (".inf", "r_max", "Input should be a finite number (got inf)"),
        ("0", "num_bessel", "Input should be greater than or equal to 1 (got 0)"),
        ("0", "avg_num_neighbors", "Input should be greater than 0 (got 0)"),
        ("-2.5", "avg_num_neighbors", "Input should be greater than 0 (got -2.5)"),
        ("1.7", "num_layers", "Input should be a valid integer (got 1.7)"),
        ("one", "l_max", "Input should be a valid integer (got 'one')"),
    ],
)
def test_bad_model_values_through_the_cli(emt_data, tmp_path, capsys, yaml_value, key, expected):
    data = tiny(emt_data, tmp_path / "run")
    data["model"][key] = yaml.safe_load(yaml_value)  # as YAML reads it from a file
    path = write_yaml(tmp_path / "c.yaml", data)
    err = one_error_line(capsys, main(["train", str(path)]), expected)
    assert err.strip() == f"error: {path}: invalid value for 'model.{key}': {expected}"
    assert not (tmp_path / "run").exists()
