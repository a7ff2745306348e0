"""Training checkpoints: everything needed to continue a run bit for bit.

A checkpoint holds the model weights, optimiser (incl. SAM's base optimiser), scheduler and
EMA states, early-stopping and best-model bookkeeping, the elapsed wall time, and every
random-number state (torch, numpy, Python, and the generator that shuffles the training
frames). It is written to a temporary file in the run folder and renamed over the old one,
so a killed process leaves either the previous or the new checkpoint, never half of one.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from legato.errors import LegatoError

FORMAT = "legato-checkpoint-v1"
CHECKPOINT_NAME = "checkpoint.pt"


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to a temp file in the same folder, fsync, then ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a text file via temp file + rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def rng_state(shuffle_gen: torch.Generator) -> dict[str, Any]:
    """Every random state the trainer touches."""
    return {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
        "shuffle": shuffle_gen.get_state(),
    }


def set_rng_state(state: dict[str, Any], shuffle_gen: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    shuffle_gen.set_state(state["shuffle"])


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Atomically write a checkpoint dict (see :class:`legato.train.trainer.Trainer`)."""
    atomic_torch_save({"format": FORMAT, **state}, path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise LegatoError(f"no checkpoint at {path} (the run has not finished an epoch yet)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise LegatoError(f"cannot read checkpoint {path}: {type(exc).__name__}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise LegatoError(f"{path} is not a legato training checkpoint")
    return state
