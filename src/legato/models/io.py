"""Build, save, load and export models."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from legato.errors import LegatoError
from legato.models.allegro import Allegro
from legato.models.config import DATA_DERIVED, check_hparams

FORMAT = "legato-model-v1"


def build_model(
    hparams: dict[str, Any], stats: Any | None = None, dtype: torch.dtype | str | None = None
) -> Allegro:
    """Allegro from constructor kwargs; dataset statistics fill ν̄, shifts and scale
    unless given explicitly in ``hparams``."""
    kw = {k: v for k, v in hparams.items() if not (k in DATA_DERIVED and v is None)}
    if stats is not None:
        if "avg_num_neighbors" not in kw and not stats.avg_num_neighbors > 0:
            raise LegatoError(
                "the training frames have no atom pairs within r_max, so the model cannot learn "
                "anything (check the data or raise model.r_max)"
            )
        kw.setdefault("avg_num_neighbors", stats.avg_num_neighbors)
        kw.setdefault("per_species_energy_shift", stats.energy_shifts)
        kw.setdefault("per_species_energy_scale", stats.force_rms)
    check_hparams(kw, "model")
    model = Allegro(**kw)
    if dtype is not None:
        model = model.to(_dtype(dtype))
    return model


def _dtype(d: torch.dtype | str) -> torch.dtype:
    if isinstance(d, torch.dtype):
        return d
    table = {"float32": torch.float32, "float64": torch.float64}
    if d not in table:
        raise LegatoError(f"dtype must be float32 or float64, got {d!r}")
    return table[d]


def model_dtype(model: torch.nn.Module) -> torch.dtype:
    return next(model.parameters()).dtype


def atomic_save(obj: Any, path: str | Path) -> None:
    """torch.save to a temporary file in the same folder, then rename (never half-written)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_model(model: Allegro, path: str | Path, extra: dict[str, Any] | None = None) -> None:
    """One file: weights, hyperparameters, type names, r_max, dtype, package version."""
    from legato import __version__

    atomic_save(
        {
            "format": FORMAT,
            "legato_version": __version__,
            "hparams": model.hparams,
            "type_names": list(model.type_names),
            "r_max": model.r_max,
            "dtype": str(model_dtype(model)).replace("torch.", ""),
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "extra": dict(extra or {}),
        },
        path,
    )


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> Allegro:
    """Load a model written by :func:`save_model` (in eval mode)."""
    path = Path(path)
    if not path.is_file():
        raise LegatoError(f"model file not found: {path}")
    try:
        blob = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:
        raise LegatoError(f"cannot read model file {path}: {type(exc).__name__}") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise LegatoError(f"{path} is not a legato model file (use legato.save_model)")
    model = Allegro(**blob["hparams"]).to(_dtype(blob["dtype"]))
    model.load_state_dict(blob["state_dict"])
    model.to(map_location)
    model.extra = blob.get("extra", {})
    return model.eval()


def export_torchscript(model: Allegro, path: str | Path) -> None:
    """Standalone TorchScript file (runs with ``torch.jit.load``, no legato needed).

    Metadata (type names, r_max, dtype) is stored in the file's ``_extra_files``.
    """
    import json

    from legato import __version__

    model = model.eval()
    scripted = torch.jit.script(model)
    meta = {
        "type_names": list(model.type_names),
        "r_max": model.r_max,
        "dtype": str(model_dtype(model)).replace("torch.", ""),
        "legato_version": __version__,
        "hparams": model.hparams,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.jit.save(scripted, str(tmp), _extra_files={"legato_metadata.json": json.dumps(meta)})
    os.replace(tmp, path)
