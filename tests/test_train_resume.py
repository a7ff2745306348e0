"""Exact resume: a real ``legato train`` process is killed (SIGKILL) after a few epochs,
continued with ``legato train --resume``, and must end bit for bit where an uninterrupted
run ends (weights, EMA, optimiser and scheduler states, log)."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml
from train_utils import make_emt_dataset, small_config

from legato.cli.main import main
from legato.train import checkpoint as ckpt
from legato.train.trainer import train

N_EPOCHS = 8
KILL_AFTER = 3


def resume_config(data, run_dir):
    cfg = small_config(data, run_dir, max_epochs=N_EPOCHS, dtype="float64")
    cfg["sam"] = {"enabled": True, "rho": 0.05}
    cfg["lr_scheduler"] = {"patience": 0, "factor": 0.5}  # lr changes inside the run
    cfg["data"].update({"n_train": 8, "n_val": 4})
    return cfg


def checkpoint_epoch(path) -> int:
    try:
        return int(torch.load(path, weights_only=False)["epoch"])
    except (FileNotFoundError, EOFError, RuntimeError):
        return 0


def assert_same(a, b, where=""):
    """Recursive exact equality of nested checkpoint structures."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert set(a) == set(b), where
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def test_killed_and_resumed_run_equals_uninterrupted_run(tmp_path):
    data = make_emt_dataset(tmp_path / "emt.extxyz", n_frames=12)
    run_b = tmp_path / "killed"
    cfg_b = tmp_path / "b.yaml"
    cfg_b.write_text(yaml.safe_dump(resume_config(data, run_b)))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "legato.cli.main", "train", str(cfg_b)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 300
    try:
        while checkpoint_epoch(run_b / "checkpoint.pt") < KILL_AFTER:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "training subprocess too slow"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    killed_at = checkpoint_epoch(run_b / "checkpoint.pt")
    assert KILL_AFTER <= killed_at < N_EPOCHS, killed_at

    assert main(["train", "--resume", str(run_b)]) == 0
    run_a = tmp_path / "straight"
    train(resume_config(data, run_a))

    a = ckpt.load_checkpoint(run_a / "checkpoint.pt")
    b = ckpt.load_checkpoint(run_b / "checkpoint.pt")
    assert a["epoch"] == b["epoch"] == N_EPOCHS
    for key in ("model", "optimizer", "scheduler", "ema", "best", "early_stopping"):
        assert_same(a[key], b[key], key)
    assert_same(a["rng"]["shuffle"], b["rng"]["shuffle"], "shuffle")
    assert a["optimizer"]["param_groups"][0]["lr"] < 0.01  # the scheduler did act

    with open(run_a / "log.csv") as fa, open(run_b / "log.csv") as fb:
        rows_a, rows_b = list(csv.DictReader(fa)), list(csv.DictReader(fb))
    assert [r["epoch"] for r in rows_b] == [str(k) for k in range(1, N_EPOCHS + 1)]
    for ra, rb in zip(rows_a, rows_b, strict=True):
        for col in ra:
            if not col.endswith("time_s") and col != "elapsed_s":
                assert ra[col] == rb[col], (ra["epoch"], col)
    best_a = torch.load(run_a / "best_model.pt", weights_only=False)["state_dict"]
    best_b = torch.load(run_b / "best_model.pt", weights_only=False)["state_dict"]
    assert_same(best_a, best_b, "best_model")


def test_resume_of_finished_run_and_budget_extension(tmp_path, capsys):
    data = make_emt_dataset(tmp_path / "emt.extxyz", n_frames=6)
    run = tmp_path / "run"
    cfg = small_config(data, run, max_epochs=2)
    cfg["data"].update({"n_train": 4, "n_val": 2})
    train(cfg)
    assert main(["train", "--resume", str(run)]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert main(["train", "--resume", str(run), "--max-epochs", "3"]) == 0
    assert ckpt.load_checkpoint(run / "checkpoint.pt")["epoch"] == 3
    assert main(["train", "--resume", str(tmp_path / "nowhere")]) == 2
    assert "run folder not found" in capsys.readouterr().err


@pytest.mark.parametrize("content", [b"", b"garbage"])
def test_corrupt_checkpoint_is_a_clear_error(tmp_path, content):
    from legato.errors import LegatoError

    p = tmp_path / "checkpoint.pt"
    p.write_bytes(content)
    with pytest.raises(LegatoError, match="cannot read checkpoint"):
        ckpt.load_checkpoint(p)
