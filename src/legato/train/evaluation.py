"""Evaluate a saved model on a dataset: metrics, and the training loss for analysis tools."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from tqdm.auto import tqdm

from legato.data import collate
from legato.data.graph import Graph
from legato.dtypes import module_dtype
from legato.errors import LegatoError
from legato.train.data import datasets_digest, frames_to_graphs, read_datasets
from legato.train.loss import LossSpec
from legato.train.metrics import MetricsAccumulator

Subset = Literal["all", "train", "val", "test"]


def model_dtype(model: torch.nn.Module) -> torch.dtype:
    return module_dtype(model)


def model_loss_spec(model: torch.nn.Module, scale: float | None = None) -> LossSpec:
    """The loss a model was trained with (stored by the trainer), else (1, 1, 0, σ=1)."""
    info: dict[str, Any] = dict(getattr(model, "extra", {}).get("loss", {}))
    spec = LossSpec(
        energy=float(info.get("energy", 1.0)),
        forces=float(info.get("forces", 1.0)),
        stress=float(info.get("stress", 0.0)),
        scale=float(scale if scale is not None else info.get("scale", 1.0)),
    )
    return spec


def select_frames(
    model: torch.nn.Module,
    data: str | Path | Sequence[str | Path],
    index: str = ":",
    subset: Subset = "all",
    where: str | Sequence[str] | None = None,
    run_dir: str | Path | None = None,
) -> list:
    """Frames of ``data``. ``subset`` train/val: the frames of the split recorded in the
    model's run folder (the data file must be the one the model was trained on); test: the
    frames labelled "test" under the run's ``data.split_key``, or, for a random split, the
    frames used neither for training nor for validation.
    ``where="KEY=VALUE"`` (or several, all of which must hold): only frames with
    ``atoms.info[KEY] == VALUE`` (as text). ``run_dir``: the training run's folder, when the
    model file does not record it (e.g. a portable copy)."""
    if subset not in ("all", "train", "val", "test"):
        raise LegatoError(f"unknown subset '{subset}' (all, train, val or test)")
    frames = read_datasets(data, index)
    if subset != "all":
        run_dir = run_dir or getattr(model, "extra", {}).get("run_dir")
        split_path = Path(run_dir) / "split.json" if run_dir else None
        if split_path is None or not split_path.is_file():
            raise LegatoError(f"--subset {subset} needs the model's run folder with split.json")
        split = json.loads(split_path.read_text())
        if datasets_digest(data) != split["sha256"] or index != split["index"]:
            raise LegatoError(f"{data} is not the data file the model was trained on")
        if subset == "test":
            frames = _test_frames(frames, split, Path(run_dir))
        else:
            frames = [frames[i] for i in split[subset]]
    conds = [where] if isinstance(where, str) else list(where or [])
    for cond in conds:
        key, sep, value = cond.partition("=")
        if not sep or not key:
            raise LegatoError(f"--where needs KEY=VALUE, got '{cond}'")
        frames = [a for a in frames if str(a.info.get(key)) == value]
        if not frames:
            wanted = " and ".join(" = ".join(c.partition("=")[::2]) for c in conds)
            raise LegatoError(f"no frames with {wanted} in {data}")
    return frames


def _test_frames(frames: list, split: dict[str, Any], run_dir: Path) -> list:
    """The held-out frames of a run (see :func:`select_frames`)."""
    used = set(split["train"]) | set(split["val"])
    key = None
    cfg_path = run_dir / "config.yaml"
    if cfg_path.is_file():
        import yaml

        key = ((yaml.safe_load(cfg_path.read_text()) or {}).get("data") or {}).get("split_key")
    if key:
        out = [a for i, a in enumerate(frames) if i not in used and a.info.get(key) == "test"]
        how = f"labelled '{key}: test'"
    else:
        out = [a for i, a in enumerate(frames) if i not in used]
        how = "left out of training and validation"
    if not out:
        raise LegatoError(f"--subset test: no frames {how} in the model's training data")
    return out


def model_batches(
    model: torch.nn.Module,
    frames: Sequence,
    batch_size: int = 4,
    max_frames: int | None = None,
    progress: bool = True,
) -> list[Graph]:
    """Collated batches in the model's dtype, with its type names and cutoff;
    ``max_frames``: that many frames evenly spaced over ``frames``."""
    if batch_size < 1:
        raise LegatoError(f"--batch-size must be >= 1 (got {batch_size})")
    frames = list(frames)
    if max_frames is not None and max_frames < len(frames):
        if max_frames < 1:
            raise LegatoError("--max-frames must be >= 1")
        # evenly spaced over the selection (consecutive MD frames are strongly correlated)
        pick = np.linspace(0, len(frames) - 1, max_frames).round().astype(int)
        frames = [frames[i] for i in pick]
    graphs = frames_to_graphs(frames, model.type_names, model.r_max, model_dtype(model), progress)
    return [collate(graphs[i : i + batch_size]) for i in range(0, len(graphs), batch_size)]


def evaluate_batches(
    model: torch.nn.Module,
    batches: Sequence[Graph],
    spec: LossSpec,
    progress: bool = False,
    desc: str = "evaluate",
) -> dict[str, float]:
    """Metrics and dataset loss (see :mod:`legato.train.metrics`) of ``model`` in eval mode."""
    was_training = model.training
    model.eval()
    acc = MetricsAccumulator(model.type_names, spec)
    for batch in tqdm(batches, desc=desc, leave=False, disable=not progress):
        acc.update(model(batch), batch)
    model.train(was_training)
    return acc.compute()


def dataset_loss(model: torch.nn.Module, batches: Sequence[Graph], spec: LossSpec) -> float:
    """Training loss of the model on the batches (dataset-level means)."""
    return evaluate_batches(model, batches, spec)["loss"]


class frozen_parameters:
    """Context: parameters do not require grad (forces still come from autograd on
    positions), which makes repeated loss evaluations cheaper."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.flags = [p.requires_grad for p in model.parameters()]

    def __enter__(self) -> torch.nn.Module:
        for p in self.model.parameters():
            p.requires_grad_(False)
        return self.model

    def __exit__(self, *exc: object) -> None:
        for p, f in zip(self.model.parameters(), self.flags, strict=True):
            p.requires_grad_(f)
