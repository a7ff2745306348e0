"""Sharpness of a trained model (paper Table 4).

Sharpness at weights w for radius ρ is estimated from random perturbations ε:

- paper definition (``dist="ball", stat="max"``): max over samples of L(w + ε) − L(w),
  ε uniform in the L2 ball ‖ε‖₂ ≤ ρ over all parameters (direction uniform on the sphere,
  radius ρ·U^(1/D) with D the number of parameters, so nearly always ≈ ρ for large D);
- public-code variant (``dist="gaussian", stat="mean"``): mean of L(w + ε) − L(w) with
  ε ~ N(0, ρ²) independently for every parameter.

The statistic comes with a standard error: σ/√n for the mean, a bootstrap estimate
(resampling the n differences) for the max.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import torch
from tqdm.auto import tqdm

from legato.data.graph import Graph
from legato.errors import LegatoError
from legato.train.evaluation import dataset_loss, frozen_parameters
from legato.train.loss import LossSpec

Stat = Literal["max", "mean"]
Dist = Literal["ball", "gaussian"]


@dataclass
class SharpnessResult:
    stat: str
    dist: str
    rho: float
    samples: int
    value: float  # the statistic of L(w + ε) − L(w)
    stderr: float
    base_loss: float  # L(w)
    mean: float
    max: float
    min: float
    n_parameters: int

    def as_dict(self) -> dict:
        return asdict(self)


def sample_perturbation(
    params: Sequence[torch.Tensor], rho: float, dist: Dist, gen: torch.Generator
) -> list[torch.Tensor]:
    """One random ε for every parameter tensor (same shapes and dtypes)."""
    z = [torch.randn(p.shape, generator=gen, dtype=torch.float64) for p in params]
    if dist == "gaussian":
        return [(rho * x).to(p.dtype) for x, p in zip(z, params, strict=True)]
    if dist == "ball":
        d = sum(x.numel() for x in z)
        norm = torch.sqrt(sum((x * x).sum() for x in z))
        u = torch.rand((), generator=gen, dtype=torch.float64)
        radius = rho * u ** (1.0 / d)
        return [(x * (radius / norm)).to(p.dtype) for x, p in zip(z, params, strict=True)]
    raise LegatoError(f"unknown perturbation distribution '{dist}' (ball or gaussian)")


def bootstrap_max_stderr(x: np.ndarray, n_boot: int = 1000, seed: int = 0) -> float:
    """Standard deviation of the max over bootstrap resamples of ``x``."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(x), size=(n_boot, len(x)))
    return float(x[idx].max(axis=1).std(ddof=1)) if len(x) > 1 else float("nan")


@torch.no_grad()
def _perturbed(params: Sequence[torch.Tensor], eps: Sequence[torch.Tensor], sign: float = 1.0):
    for p, e in zip(params, eps, strict=True):
        p.add_(e, alpha=sign)


def loss_differences(
    model: torch.nn.Module,
    batches: Sequence[Graph],
    spec: LossSpec,
    rho: float,
    samples: int,
    dist: Dist = "ball",
    seed: int = 0,
    progress: bool = True,
) -> tuple[float, np.ndarray]:
    """L(w) and the array of L(w + ε_k) − L(w), k = 1..samples. Weights are restored
    exactly (copied back) after every sample."""
    if rho <= 0 or samples < 1:
        raise LegatoError("sharpness needs rho > 0 and samples >= 1")
    params = [p for p in model.parameters()]
    saved = [p.detach().clone() for p in params]
    gen = torch.Generator().manual_seed(seed)
    diffs = np.empty(samples)
    with frozen_parameters(model):
        base = dataset_loss(model, batches, spec)
        bar = tqdm(range(samples), desc=f"sharpness ({dist}, rho={rho:g})", disable=not progress)
        try:
            for k in bar:
                eps = sample_perturbation(params, rho, dist, gen)
                _perturbed(params, eps)
                diffs[k] = dataset_loss(model, batches, spec) - base
                with torch.no_grad():
                    for p, s in zip(params, saved, strict=True):
                        p.copy_(s)
                bar.set_postfix(max=f"{diffs[: k + 1].max():.3g}", mean=f"{diffs[: k + 1].mean():.3g}")
        finally:
            with torch.no_grad():
                for p, s in zip(params, saved, strict=True):
                    p.copy_(s)
    return base, diffs


def sharpness(
    model: torch.nn.Module,
    batches: Sequence[Graph],
    spec: LossSpec,
    rho: float = 0.05,
    samples: int = 1000,
    stat: Stat = "max",
    dist: Dist = "ball",
    seed: int = 0,
    progress: bool = True,
) -> SharpnessResult:
    """Sharpness statistic with its standard error (see the module docstring)."""
    if stat not in ("max", "mean"):
        raise LegatoError(f"unknown statistic '{stat}' (max or mean)")
    base, d = loss_differences(model, batches, spec, rho, samples, dist, seed, progress)
    if stat == "max":
        value, se = float(d.max()), bootstrap_max_stderr(d, seed=seed)
    else:
        value = float(d.mean())
        se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")
    return SharpnessResult(
        stat=stat,
        dist=dist,
        rho=rho,
        samples=samples,
        value=value,
        stderr=se,
        base_loss=base,
        mean=float(d.mean()),
        max=float(d.max()),
        min=float(d.min()),
        n_parameters=sum(p.numel() for p in model.parameters()),
    )
