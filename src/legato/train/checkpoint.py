"""Training checkpoints: everything needed to continue a run bit for bit.

A checkpoint holds the model weights, optimiser (incl. SAM's base optimiser), scheduler and
EMA states, early-stopping and best-model bookkeeping, the elapsed wall time, and every
random-number state (torch, numpy, Python, and the generator that shuffles the training
frames). It is written with :func:`legato.fileio.atomic_torch_save` (temporary file, fsync,
rename), so a killed process leaves either the previous or the new checkpoint, never half
of one.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from legato.errors import LegatoError
from legato.fileio import atomic_torch_save, atomic_write_text

__all__ = [
    "CHECKPOINT_NAME",
    "FORMAT",
    "atomic_torch_save",
    "atomic_write_text",
    "check_new_run_folder",
    "finite_json",
    "load_checkpoint",
    "rng_state",
    "save_checkpoint",
    "set_rng_state",
]

FORMAT = "legato-checkpoint-v1"
CHECKPOINT_NAME = "checkpoint.pt"


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
        raise LegatoError(
            f"{path.parent} has no checkpoint (the run stopped before its first epoch ended), so "
            "there is nothing to resume: start it again with legato train CONFIG.yaml, which moves "
            "this folder aside"
        )
    from legato.models.io import unreadable_reason

    reason = unreadable_reason(path)
    if reason is not None:
        raise LegatoError(f"cannot read checkpoint {path}: {reason}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise LegatoError(f"cannot read checkpoint {path}: {msg}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise LegatoError(f"{path} is not a legato training checkpoint")
    return state


def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def finite_json(obj: Any, indent: int | None = 1) -> str:
    """JSON text of ``obj`` with NaN and infinities written as ``null`` (valid JSON)."""
    return json.dumps(_finite(obj), indent=indent, allow_nan=False)


def check_new_run_folder(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds an unfinished start (to be moved aside); raise if it holds a
    run that can be resumed or files that are not a legato run."""
    if run_dir.exists() and not run_dir.is_dir():
        raise LegatoError(f"run folder {run_dir} exists and is not a folder")
    if not run_dir.exists() or not any(run_dir.iterdir()):
        return False
    if (run_dir / CHECKPOINT_NAME).exists():
        raise LegatoError(
            f"run folder {run_dir} already holds a run (continue it with legato train --resume "
            f"{run_dir}, or pick another run_dir)"
        )
    if not (run_dir / "config.yaml").is_file():
        raise LegatoError(f"run folder {run_dir} is not empty and holds no legato run; pick another run_dir")
    return True
