"""The trainer end to end on a small EMT dataset: the loss falls, outputs are consistent,
stopping rules fire, and user errors become one clear line with exit status 2."""

from __future__ import annotations

import csv
import json

import pytest
import torch
import yaml
from train_utils import make_emt_dataset, small_config

import legato
from legato.cli.main import main
from legato.errors import LegatoError
from legato.train import checkpoint as ckpt
from legato.train.config import load_config
from legato.train.evaluation import evaluate_batches, model_batches, model_loss_spec
from legato.train.trainer import Trainer, train


@pytest.fixture(scope="module")
def emt_data(tmp_path_factory):
    return make_emt_dataset(tmp_path_factory.mktemp("emt") / "emt.extxyz", stress=True)


def read_log(run_dir):
    with open(run_dir / "log.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_small_model_loss_falls_and_outputs_are_consistent(emt_data, tmp_path):
    run = tmp_path / "run"
    cfg = small_config(emt_data, run, max_epochs=12, dtype="float32")
    cfg["loss"] = {"stress": 1.0}
    summary = train(cfg)
    rows = read_log(run)
    assert float(rows[-1]["val_stress_rmse_meV_A3"]) > 0 and float(rows[0]["train_loss_stress"]) > 0
    assert [int(r["epoch"]) for r in rows] == list(range(1, 13))
    first, last = float(rows[0]["train_loss"]), float(rows[-1]["train_loss"])
    assert last < 0.5 * first, (first, last)
    assert float(rows[-1]["val_loss"]) < 0.6 * float(rows[0]["val_loss"])
    assert summary["stop_reason"] == "max_epochs" and summary["epochs"] == 12
    for name in (
        "config.yaml",
        "split.json",
        "stats.json",
        "learning_curves.png",
        "checkpoint.pt",
        "best_model.pt",
        "last_model.pt",
        "summary.json",
    ):
        assert (run / name).is_file(), name
    # the resolved config is complete and valid, and records the inferred type names
    resolved = load_config(run / "config.yaml")
    assert resolved.model["type_names"] == ["Al", "Cu"]
    assert resolved.model["l_max"] == 1 and resolved.optimizer.lr == 0.01
    split = json.loads((run / "split.json").read_text())
    assert len(split["train"]) == 16 and len(split["val"]) == 8
    assert not set(split["train"]) & set(split["val"])
    # the saved best model reproduces the logged validation loss of its epoch
    model = legato.load_model(run / "best_model.pt")
    assert next(model.parameters()).dtype == torch.float32
    best_row = rows[summary["best_epoch"] - 1]
    frames = legato.data.read_frames(emt_data)
    batches = model_batches(model, [frames[i] for i in split["val"]], 4, progress=False)
    metrics = evaluate_batches(model, batches, model_loss_spec(model))
    assert metrics["loss"] == pytest.approx(float(best_row["val_loss"]), rel=1e-5)
    assert metrics["loss"] == pytest.approx(summary["best_val_loss"], rel=1e-5)
    assert model.extra["kind"] == "allegro" and model.extra["loss"]["scale"] > 0
    # the model file carries σ of the training forces for the MD outlier detector
    stats = json.loads((run / "stats.json").read_text())
    assert model.extra["force_std"] == pytest.approx(stats["force_std_eV_A"])
    from legato.md.runner import model_force_sigma

    assert model_force_sigma(model) == pytest.approx(stats["force_std_eV_A"])


def final_weights(run_dir):
    return ckpt.load_checkpoint(run_dir / "checkpoint.pt")["model"]


def test_trainer_with_sam_rho_zero_equals_plain_adam(emt_data, tmp_path):
    cfg_a = small_config(emt_data, tmp_path / "adam", max_epochs=2)
    cfg_a["data"].update({"n_train": 8, "n_val": 4})
    cfg_s = small_config(emt_data, tmp_path / "sam0", max_epochs=2)
    cfg_s["data"].update({"n_train": 8, "n_val": 4})
    cfg_s["sam"] = {"enabled": True, "rho": 0.0}
    train(cfg_a)
    train(cfg_s)
    wa, ws = final_weights(tmp_path / "adam"), final_weights(tmp_path / "sam0")
    assert all(torch.equal(wa[k], ws[k]) for k in wa)
    # while a real ρ changes the trajectory
    cfg_r = small_config(emt_data, tmp_path / "sam", max_epochs=2)
    cfg_r["data"].update({"n_train": 8, "n_val": 4})
    cfg_r["sam"] = {"enabled": True, "rho": 0.05, "adaptive": True}
    train(cfg_r)
    wr = final_weights(tmp_path / "sam")
    assert any(not torch.equal(wa[k], wr[k]) for k in wa)


@pytest.mark.parametrize(
    "override, reason, epochs",
    [
        ({"early_stopping": {"patience": 2, "delta": 100.0}}, "early_stopping", 3),
        ({"optimizer": {"lr": 1e-6}}, "min_lr", 1),
        ({"training": {"max_time_minutes": 1e-5}}, "max_time", 1),
    ],
)
def test_stopping_rules(emt_data, tmp_path, override, reason, epochs):
    cfg = small_config(emt_data, tmp_path / "run", max_epochs=20)
    cfg["data"].update({"n_train": 8, "n_val": 4})
    for section, values in override.items():
        cfg.setdefault(section, {}).update(values)
    summary = train(cfg)
    assert summary["stop_reason"] == reason and summary["epochs"] == epochs


def test_run_dir_is_never_overwritten(emt_data, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "precious.txt").write_text("keep")
    with pytest.raises(LegatoError, match="is not empty and holds no legato run"):
        Trainer.create(load_config_dict(small_config(emt_data, run)))
    assert (run / "precious.txt").read_text() == "keep"


def load_config_dict(d):
    from legato.train.config import parse_config

    return parse_config(d)


def write_yaml(path, data):
    path.write_text(yaml.safe_dump(data))
    return path


def test_cli_unknown_key_is_one_clear_error(emt_data, tmp_path, capsys):
    cfg = small_config(emt_data, tmp_path / "run")
    cfg["training"]["batchsize"] = 2
    code = main(["train", str(write_yaml(tmp_path / "bad.yaml", cfg))])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip() == ("error: unknown config key 'training.batchsize' (did you mean 'batch_size'?)")
    assert not (tmp_path / "run").exists()


def test_cli_malformed_and_unlabelled_data(tmp_path, capsys):
    bad = tmp_path / "bad.extxyz"
    bad.write_text("3\nnot a comment line\nH 0 0\nthis is not xyz\n")
    cfg = small_config(bad, tmp_path / "run")
    code = main(["train", str(write_yaml(tmp_path / "c.yaml", cfg))])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: cannot read") and err.count("\n") == 1
    # frames without labels
    from ase.build import bulk
    from ase.io import write

    nolabel = tmp_path / "nolabel.extxyz"
    write(nolabel, [bulk("Cu", cubic=True) for _ in range(4)])
    cfg = small_config(nolabel, tmp_path / "run2")
    cfg["data"].update({"n_train": 2, "n_val": 1})
    code = main(["train", str(write_yaml(tmp_path / "c2.yaml", cfg))])
    err = capsys.readouterr().err
    assert code == 2 and "neither energy nor force labels" in err
    assert not (tmp_path / "run2").exists()  # nothing written for a run that cannot start
    code = main(["train", str(tmp_path / "missing.yaml")])
    assert code == 2 and "config file not found" in capsys.readouterr().err


def test_sgd_by_name_with_sam_and_gradient_clipping(emt_data, tmp_path):
    """‖Δw‖ ≤ steps · lr · clip when every (SAM) gradient is clipped to norm ``clip``."""
    from legato.train.config import parse_config

    cfg = small_config(emt_data, tmp_path / "run", max_epochs=1, grad_clip_norm=1e-3)
    cfg["data"].update({"n_train": 8, "n_val": 4})
    cfg["optimizer"] = {"name": "SGD", "lr": 0.5, "kwargs": {"momentum": 0.0}}
    cfg["sam"] = {"enabled": True, "rho": 0.05}
    cfg["ema"] = {"enabled": False}
    trainer = Trainer.create(parse_config(cfg))
    assert type(trainer.optimizer.base_optimizer).__name__ == "SGD"
    w0 = torch.cat([p.detach().flatten().clone() for p in trainer.params])
    trainer.fit()
    w1 = torch.cat([p.detach().flatten() for p in trainer.params])
    steps = 2  # 8 frames, batch 4
    assert 0 < float((w1 - w0).norm()) <= steps * 0.5 * 1e-3 * (1 + 1e-6)


@pytest.mark.parametrize(
    "optimizer, message",
    [
        ({"name": "Adamm"}, "unknown optimizer 'Adamm' (did you mean 'Adam'?)"),
        ({"name": "SGD", "amsgrad": True}, "optimizer.amsgrad is not an argument of torch.optim.SGD"),
        ({"name": "Adam", "kwargs": {"betas1": 0.9}}, "(did you mean 'betas'?)"),
    ],
)
def test_optimizer_errors(emt_data, tmp_path, optimizer, message):
    from legato.train.config import parse_config
    from legato.train.trainer import make_optimizer

    cfg = parse_config(dict(small_config(emt_data, tmp_path / "r"), optimizer=optimizer))
    with pytest.raises(LegatoError) as exc:
        make_optimizer(cfg, [torch.nn.Parameter(torch.ones(2))])
    assert message in str(exc.value)


def test_training_on_several_data_files(tmp_path, capsys):
    """``data.path`` may list files (e.g. liquid + crystal): read in order, one split, the
    digests recorded; evaluate --subset takes the same files; a changed file stops a resume."""
    a = make_emt_dataset(tmp_path / "a.extxyz", n_frames=12, seed=1)
    b = make_emt_dataset(tmp_path / "b.extxyz", n_frames=12, seed=2)
    cfg = small_config(a, tmp_path / "run", max_epochs=1)
    cfg["data"] = {"path": [str(a), str(b)], "split_key": "split"}
    train(cfg)
    best = str(tmp_path / "run" / "best_model.pt")
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    assert split["n_frames"] == 24 and split["data_path"] == [str(a.resolve()), str(b.resolve())]
    saved = load_config(tmp_path / "run" / "config.yaml")
    assert saved.data.path == split["data_path"]
    assert main(["evaluate", best, str(a), str(b), "--subset", "val", "--no-progress"]) == 0
    assert "on 4 frames" in capsys.readouterr().out  # 2 validation frames per file
    assert main(["evaluate", best, str(a), "--subset", "val", "--no-progress"]) == 2
    assert "not the data file the model was trained on" in capsys.readouterr().err
    b.write_text(b.read_text() + "\n")
    with pytest.raises(LegatoError, match="changed since the run started"):
        Trainer.resume(tmp_path / "run", max_epochs=2)


def test_fine_tuning_starts_from_the_saved_weights(emt_data, tmp_path):
    """training.init_from: the new run's model is the saved one (weights and data-derived
    constants) before its first step; another architecture is one clear error."""
    train(small_config(emt_data, tmp_path / "base", max_epochs=1))
    saved = legato.load_model(tmp_path / "base" / "best_model.pt")
    other = make_emt_dataset(tmp_path / "other.extxyz", n_frames=24, seed=5, rattle=0.2)
    cfg = small_config(other, tmp_path / "tuned", init_from=str(tmp_path / "base" / "best_model.pt"))
    tuner = Trainer.create(load_config_dict(cfg))
    for key, value in saved.state_dict().items():
        assert torch.equal(tuner.model.state_dict()[key], value), key
    assert tuner.model.hparams["per_species_energy_shift"] == saved.hparams["per_species_energy_shift"]
    wide = small_config(other, tmp_path / "wide", init_from=str(tmp_path / "base" / "best_model.pt"))
    wide["model"]["env_embed_multiplicity"] = 8
    with pytest.raises(LegatoError, match="model.env_embed_multiplicity is 8 here but 4"):
        Trainer.create(load_config_dict(wide))
    assert not (tmp_path / "wide").exists()
    missing = small_config(other, tmp_path / "missing", init_from=str(tmp_path / "nope.pt"))
    with pytest.raises(LegatoError, match="model file not found"):
        Trainer.create(load_config_dict(missing))


def test_where_filters_combine(tmp_path, capsys):
    """--where KEY=VALUE repeated: every condition must hold; none left is one clear error."""
    import ase.io

    from legato.train.evaluation import select_frames

    frames = ase.io.read(make_emt_dataset(tmp_path / "d.extxyz", n_frames=12), ":")
    for k, a in enumerate(frames):
        a.info["source"] = "cluster" if k % 2 else "md"
    ase.io.write(tmp_path / "tagged.extxyz", frames)
    got = select_frames(None, tmp_path / "tagged.extxyz", where=["split=train", "source=md"])
    want = [a for a in frames if a.info["split"] == "train" and a.info["source"] == "md"]
    assert 0 < len(got) < len(frames) and len(got) == len(want)
    assert len(select_frames(None, tmp_path / "tagged.extxyz", where="source=md")) == 6
    with pytest.raises(LegatoError, match="no frames with split = test and source = nothing"):
        select_frames(None, tmp_path / "tagged.extxyz", where=["split=test", "source=nothing"])
