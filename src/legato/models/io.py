"""Build, save, load and export models."""

from __future__ import annotations

import contextlib
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from legato.dtypes import as_dtype, dtype_name, module_dtype
from legato.errors import LegatoError
from legato.fileio import atomic_save, atomic_torch_save
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
        model = model.to(as_dtype(dtype))
    return model


def finetuning_start(
    path: str | Path, hparams: dict[str, Any], dtype: torch.dtype | str, what: str = "init_from"
) -> Allegro:
    """The architecture ``hparams`` with the weights and data-derived constants (ν̄, shifts,
    scales) of the saved model at ``path``: the start of a fine-tuning run. Any difference in
    the other hyperparameters is one LegatoError naming it."""
    import json

    path = Path(path)
    if not path.is_file():
        raise LegatoError(f"{what}: model file not found: {path}")
    base = load_model(path)
    for key, value in hparams.items():
        if key not in DATA_DERIVED and json.dumps(base.hparams.get(key)) != json.dumps(value):
            raise LegatoError(
                f"{what} {path}: model.{key} is {value!r} here but {base.hparams.get(key)!r} "
                "in the saved model"
            )
    model = build_model({**hparams, **{k: base.hparams[k] for k in DATA_DERIVED}}, dtype=dtype)
    own = model.state_dict()
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in base.state_dict().items()})
    return model


def model_dtype(model: torch.nn.Module) -> torch.dtype:
    return module_dtype(model)


def save_model(model: Allegro, path: str | Path, extra: dict[str, Any] | None = None) -> None:
    """One file: weights, hyperparameters, type names, r_max, dtype, package version."""
    from legato import __version__

    atomic_torch_save(
        {
            "format": FORMAT,
            "legato_version": __version__,
            "hparams": model.hparams,
            "type_names": list(model.type_names),
            "r_max": model.r_max,
            "dtype": dtype_name(model_dtype(model)),
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "extra": dict(extra or {}),
        },
        path,
    )


def check_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch.device; an unknown name or an absent GPU is one LegatoError line."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise LegatoError(f"unknown device '{device}' (use cpu, cuda or cuda:N)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise LegatoError(f"CUDA is not available on this machine (device '{device}' requested)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            n = torch.cuda.device_count()
            raise LegatoError(f"device '{device}' requested, but this machine has {n} CUDA device(s)")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise LegatoError(f"MPS is not available on this machine (device '{device}' requested)")
    return dev


def unreadable_reason(path: Path) -> str | None:
    """Why ``path`` cannot be a file written by ``torch.save``, judged from its bytes (None: it
    looks like one). Names deployed TorchScript files, empty and truncated files."""
    size = path.stat().st_size
    if size == 0:
        return "the file is empty"
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head != b"PK\x03\x04":  # torch.save writes zip archives
        return None if head[:1] == b"\x80" else "it is not a file written by legato (not a torch file)"
    if not zipfile.is_zipfile(path):
        return "the file is truncated or incomplete (was it still being written or copied?)"
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError):
        return "the file is truncated or incomplete (was it still being written or copied?)"
    if any("/code/__torch__/" in n or n.endswith("/constants.pkl") for n in names):
        return (
            "it is a deployed TorchScript file (written by legato deploy) for MD engines and "
            "torch.jit.load; use the original model file (e.g. the run's best_model.pt) here"
        )
    return None


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> Allegro:
    """Load a model written by :func:`save_model` (in eval mode)."""
    path = Path(path)
    if path.is_dir():
        raise LegatoError(f"{path} is a folder, not a model file")
    if not path.is_file():
        raise LegatoError(f"model file not found: {path}")
    device = check_device(map_location)
    reason = unreadable_reason(path)
    if reason is not None:
        raise LegatoError(f"cannot load model {path}: {reason}")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise LegatoError(f"cannot read model file {path}: {msg}") from None
    if isinstance(blob, dict) and blob.get("format") == "legato-checkpoint-v1":
        raise LegatoError(
            f"{path} is a training checkpoint, not a model: use best_model.pt or last_model.pt "
            "of the run folder"
        )
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise LegatoError(f"{path} is not a legato model file (use legato.save_model)")
    model = Allegro(**blob["hparams"]).to(as_dtype(blob["dtype"]))
    model.load_state_dict(blob["state_dict"])
    model.to(device)
    model.extra = blob.get("extra", {})
    return model.eval()


# Version of the deployed-file interface: ``forward(graph dict)`` and
# ``edge_forward(vec, center, neighbor_species, center_species)`` (see Allegro.edge_forward).
DEPLOY_FORMAT = 1


def deploy_metadata(model: Allegro, kind: str) -> dict[str, Any]:
    """What a deployed file says about its model (stored as ``legato_metadata.json``)."""
    from legato import __version__

    return {
        "type_names": list(model.type_names),
        "r_max": model.r_max,
        "dtype": dtype_name(model_dtype(model)),
        "legato_version": __version__,
        "torch_version": torch.__version__,
        "format": DEPLOY_FORMAT,
        "kind": kind,
        "hparams": model.hparams,
    }


def export_torchscript(model: Allegro, path: str | Path) -> None:
    """Standalone TorchScript file (runs with ``torch.jit.load``, no legato needed).

    Metadata (type names, r_max, dtype) is stored in the file's ``_extra_files``.
    """
    import json

    model = model.eval()
    with _quiet_torchscript():
        scripted = torch.jit.script(model)
    extra = {"legato_metadata.json": json.dumps(deploy_metadata(model, "torchscript"))}
    with _quiet_torchscript():
        atomic_save(path, lambda fh: torch.jit.save(scripted, fh, _extra_files=extra))


@contextlib.contextmanager
def _quiet_torchscript() -> Iterator[None]:
    """Silence TorchScript's messages addressed to library authors, not to the user: its
    deprecation notice and its advice on attribute annotations inside modules."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"`torch\.jit\.\w+` is deprecated", category=DeprecationWarning
        )
        warnings.filterwarnings("ignore", message="The TorchScript type system", category=UserWarning)
        yield
