"""One-dimensional loss surface L(w + t·d), t ∈ [−1, 1] (paper Fig. 5).

The direction d is random but reproducible: each parameter tensor gets Gaussian numbers
from a generator seeded by ``seed`` and the parameter's name, so models with the same
architecture see the very same direction, and models that share only some parameter names
share those parts. Normalisation of d:

- ``global``: d scaled to global L2 norm ``scale`` (default 1);
- ``filter``: filter-wise normalisation (Li et al. 2018): every row (slice along the first
  dimension) of d gets the norm of the same row of w, times ``scale``; 1-D tensors are
  normalised as a whole;
- ``none``: d ~ N(0, scale²) per parameter.
"""

from __future__ import annotations

import csv
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Literal

import numpy as np
import torch
from tqdm.auto import tqdm

from legato.data.graph import Graph
from legato.errors import LegatoError
from legato.fileio import atomic_save
from legato.train.evaluation import dataset_loss, frozen_parameters
from legato.train.loss import LossSpec

Normalize = Literal["global", "filter", "none"]


def random_direction(
    model: torch.nn.Module, seed: int = 0, normalize: Normalize = "global", scale: float = 1.0
) -> dict[str, torch.Tensor]:
    """Seeded random direction, one tensor per named parameter (see module docstring)."""
    d: dict[str, torch.Tensor] = {}
    for name, p in model.named_parameters():
        gen = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))
        d[name] = torch.randn(p.shape, generator=gen, dtype=torch.float64)
    if normalize == "none":
        return {n: scale * x for n, x in d.items()}
    if normalize == "global":
        norm = torch.sqrt(sum((x * x).sum() for x in d.values()))
        return {n: x * (scale / norm) for n, x in d.items()}
    if normalize == "filter":
        params = dict(model.named_parameters())
        out = {}
        for n, x in d.items():
            w = params[n].detach().double()
            if x.dim() <= 1:
                out[n] = x * (w.norm() / x.norm().clamp_min(1e-30)) * scale
            else:
                xr, wr = x.reshape(x.shape[0], -1), w.reshape(w.shape[0], -1)
                f = wr.norm(dim=1) / xr.norm(dim=1).clamp_min(1e-30)  # [rows]
                out[n] = (xr * f.unsqueeze(1) * scale).reshape(x.shape)
        return out
    raise LegatoError(f"unknown direction normalisation '{normalize}' (global, filter, none)")


def loss_curve(
    model: torch.nn.Module,
    batches: Sequence[Graph],
    spec: LossSpec,
    direction: dict[str, torch.Tensor],
    ts: np.ndarray,
    progress: bool = True,
    desc: str = "landscape",
) -> np.ndarray:
    """L(w + t·d) for every t (weights restored exactly afterwards)."""
    named = dict(model.named_parameters())
    saved = {n: p.detach().clone() for n, p in named.items()}
    out = np.empty(len(ts))
    with frozen_parameters(model):
        try:
            for k, t in enumerate(tqdm(ts, desc=desc, disable=not progress)):
                with torch.no_grad():
                    for n, p in named.items():
                        p.copy_((saved[n].double() + float(t) * direction[n]).to(p.dtype))
                out[k] = dataset_loss(model, batches, spec)
        finally:
            with torch.no_grad():
                for n, p in named.items():
                    p.copy_(saved[n])
    return out


def write_csv(path: str | Path, ts: np.ndarray, curves: dict[str, np.ndarray]) -> None:
    """One row per t: t and the loss of every curve."""

    def write(fh: IO) -> None:
        w = csv.writer(fh)
        w.writerow(["t", *[f"loss_{k}" for k in curves]])
        for i, t in enumerate(ts):
            w.writerow([f"{t:.6g}", *[f"{c[i]:.10g}" for c in curves.values()]])

    atomic_save(path, write, binary=False)


def plot(path: str | Path, ts: np.ndarray, curves: dict[str, np.ndarray], title: str) -> None:
    """All curves on one PNG: L(w + t·d) − L(w) on a linear axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.2))
    i0 = int(np.argmin(np.abs(ts)))
    for label, c in curves.items():
        ax.plot(ts, c - c[i0], label=f"{label} (L(w) = {c[i0]:.3g})")
    ax.set_xlabel("t  (w + t·d)")
    ax.set_ylabel("L(w + t·d) − L(w)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    try:
        atomic_save(path, lambda fh: fig.savefig(fh, dpi=120, format="png"))
    finally:
        plt.close(fig)
