"""Identity of a potential: what an MD checkpoint (and a tfail folder) records of its model,
so that a run is never continued with a different one."""

from __future__ import annotations

import hashlib

import torch

#: the keys of :func:`model_identity`, in user wording
_WHAT = {
    "fingerprint": "weights or settings",
    "class": "model type",
    "type_names": "type names",
    "r_max": "cutoff r_max",
    "dtype": "dtype",
}


def model_fingerprint(model: torch.nn.Module) -> str:
    """SHA-256 over the model's named parameters and buffers and the plain scalar settings
    of its modules (e.g. a pair potential's σ): same model → same print."""
    h = hashlib.sha256()
    for name, mod in model.named_modules():
        scalars = sorted(
            (k, v)
            for k, v in vars(mod).items()
            if isinstance(v, (int, float, str, bool)) and not k.startswith("_") and k != "training"
        )
        h.update(f"{name}:{type(mod).__name__}:{scalars}".encode())
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def model_identity(
    model: torch.nn.Module, type_names: list[str], r_max: float, dtype: torch.dtype
) -> dict[str, object]:
    """Fingerprint, class, type names, cutoff and dtype of a potential (JSON-safe)."""
    return {
        "fingerprint": model_fingerprint(model),
        "class": type(model).__name__,
        "type_names": list(type_names),
        "r_max": float(r_max),
        "dtype": str(dtype).removeprefix("torch."),
    }


def identity_differences(stored: dict, current: dict) -> list[str]:
    """What differs between two :func:`model_identity` records, in user wording."""
    return [_WHAT.get(k, k) for k in current if stored.get(k) != current[k]]
