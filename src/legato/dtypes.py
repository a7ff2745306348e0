"""The one dtype helper: names of the floating-point precisions legato runs in, and the dtype
of a model (docs/conventions.md: float32 or float64, chosen per model)."""

from __future__ import annotations

import torch

from legato.errors import LegatoError

#: precision name (configs, model files, CLI) → torch dtype
DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float64": torch.float64}


def as_dtype(d: torch.dtype | str) -> torch.dtype:
    """A torch dtype from itself or its name ("float32", "float64"); anything else is one
    LegatoError line."""
    if isinstance(d, torch.dtype):
        return d
    if d not in DTYPES:
        raise LegatoError(f"dtype must be float32 or float64, got {d!r}")
    return DTYPES[d]


def dtype_name(d: torch.dtype) -> str:
    """'float32' for torch.float32 (as stored in model files)."""
    return str(d).replace("torch.", "")


def module_dtype(module: torch.nn.Module, default: torch.dtype = torch.float64) -> torch.dtype:
    """The dtype of a module's floating parameters, else of its floating buffers, else
    ``default``."""
    for t in (*module.parameters(), *module.buffers()):
        if t.is_floating_point():
            return t.dtype
    return default
