"""Sharpness of a trained model (paper Table 4).

Sharpness at weights w for radius ρ is estimated from random perturbations ε:

- paper definition (``dist="ball", stat="max"``): max over samples of L(w + ε) − L(w),
  ε uniform in the L2 ball ‖ε‖₂ ≤ ρ over all parameters (direction uniform on the sphere,
  radius ρ·U^(1/D) with D the number of parameters, so nearly always ≈ ρ for large D);
- public-code variant (``dist="gaussian", stat="mean"``): mean of L(w + ε) − L(w) with
  ε ~ N(0, ρ²) independently for every parameter.

The statistic comes with a standard error: σ/√n for the mean, a bootstrap estimate
(resampling the n differences) for the max.

With thousands of parameters random directions barely see the steepest ones, so the max over
random ε is a loose lower bound of the paper's worst case (Eq. 2, not normalised)
max over ‖ε‖₂ ≤ ρ of L(w + ε) − L(w). :func:`worst_case_sharpness` approaches it by projected
gradient ascent in the ball, on the same frames and loss.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np
import torch
from tqdm.auto import tqdm

from legato.data import keys as K
from legato.data.graph import Graph
from legato.errors import LegatoError
from legato.train.evaluation import dataset_loss, frozen_parameters
from legato.train.loss import LossSpec, per_atom_energy_error
from legato.train.metrics import MetricsAccumulator

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
        return [(rho * x).to(p.dtype).to(p.device) for x, p in zip(z, params, strict=True)]
    if dist == "ball":
        d = sum(x.numel() for x in z)
        norm = torch.sqrt(sum((x * x).sum() for x in z))
        u = torch.rand((), generator=gen, dtype=torch.float64)
        radius = rho * u ** (1.0 / d)
        return [(x * (radius / norm)).to(p.dtype).to(p.device) for x, p in zip(z, params, strict=True)]
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


# ----------------------------------------------------------------------------- worst case
@dataclass
class WorstCaseResult:
    rho: float
    steps: int  # ascent steps after the start point of each run
    step_fraction: float  # step length / ρ
    restarts: int  # extra runs from random points on the sphere ‖ε‖₂ = ρ
    value: float  # the largest L(w + ε) − L(w) over all iterates
    base_loss: float  # L(w)
    eps_norm: float  # ‖ε‖₂ of the best iterate
    grad_norm: float  # ‖∇L(w)‖₂ (ρ‖∇L(w)‖ is the first-order estimate of the value)
    best_restart: int
    best_step: int
    n_gradients: int  # loss-and-gradient passes over the frames (plus one loss pass per run)
    n_parameters: int
    trace: list[dict[str, float]] = field(default_factory=list)  # restart, step, value, eps_norm per iterate

    def as_dict(self) -> dict:
        return asdict(self)


def _norm(ts: Sequence[torch.Tensor]) -> float:
    """‖(t_1, t_2, …)‖₂ over all tensors, summed in double precision on the host."""
    return math.sqrt(sum(float(torch.linalg.vector_norm(t)) ** 2 for t in ts))


def loss_and_gradient(
    model: torch.nn.Module,
    batches: Sequence[Graph],
    spec: LossSpec,
    params: Sequence[torch.Tensor],
    need_grad: bool = True,
) -> tuple[float, list[torch.Tensor] | None]:
    """The dataset loss of :func:`~legato.train.evaluation.dataset_loss` (dataset-level means,
    the terms whose labels exist) and, with ``need_grad``, its gradient with respect to
    ``params`` (same shapes, dtypes and devices). The model runs in training mode (forces
    differentiable in the weights); its mode and ``requires_grad`` flags are restored."""
    n_e = sum(len(b[K.NUM_ATOMS]) for b in batches if K.TOTAL_ENERGY in b)
    n_f = sum(b[K.FORCES].numel() for b in batches if K.FORCES in b)
    n_s = sum(b[K.STRESS].numel() for b in batches if K.STRESS in b)
    inv2 = 1.0 / spec.scale**2
    w_e = spec.energy * inv2 / max(n_e, 1)
    w_f = spec.forces * inv2 / max(n_f, 1)
    w_s = spec.stress * inv2 / max(n_s, 1)
    acc = MetricsAccumulator(model.type_names, spec)
    grads = [torch.zeros_like(p) for p in params] if need_grad else None
    was_training, flags = model.training, [p.requires_grad for p in params]
    model.train()
    try:
        for p in params:
            p.requires_grad_(need_grad)
        for b in batches:
            pred = model(b)
            acc.update(pred, b)
            if grads is None:
                continue
            terms = []  # sums of squared errors, weighted so that their total over batches is L
            if K.TOTAL_ENERGY in b and K.TOTAL_ENERGY in pred and w_e > 0:
                terms.append(w_e * per_atom_energy_error(pred, b).pow(2).sum())
            if K.FORCES in b and K.FORCES in pred and w_f > 0:
                terms.append(w_f * (pred[K.FORCES] - b[K.FORCES]).pow(2).sum())
            if K.STRESS in b and K.STRESS in pred and w_s > 0:
                terms.append(w_s * (pred[K.STRESS] - b[K.STRESS]).pow(2).sum())
            total = sum(terms)
            if isinstance(total, torch.Tensor) and total.requires_grad:
                parts = torch.autograd.grad(total, list(params), allow_unused=True)
                for g, d in zip(grads, parts, strict=True):
                    if d is not None:
                        g.add_(d)
    finally:
        model.train(was_training)
        for p, f in zip(params, flags, strict=True):
            p.requires_grad_(f)
    return acc.compute()["loss"], grads


def _random_sphere(params: Sequence[torch.Tensor], rho: float, gen: torch.Generator) -> list[torch.Tensor]:
    """A point uniform on the sphere ‖ε‖₂ = ρ (drawn on the host, moved to the parameters)."""
    z = [torch.randn(p.shape, generator=gen, dtype=torch.float64) for p in params]
    scale = rho / _norm(z)
    return [(x * scale).to(p.dtype).to(p.device) for x, p in zip(z, params, strict=True)]


def worst_case_sharpness(
    model: torch.nn.Module,
    batches: Sequence[Graph],
    spec: LossSpec,
    rho: float = 0.05,
    steps: int = 20,
    step_fraction: float = 0.5,
    restarts: int = 0,
    seed: int = 0,
    progress: bool = True,
) -> WorstCaseResult:
    """max over ‖ε‖₂ ≤ ρ of L(w + ε) − L(w) (paper Eq. 2) by projected gradient ascent.

    Run 0 starts at the SAM point ε₀ = ρ·g/‖g‖ (g = ∇L(w); a random point of the sphere if
    g = 0), each of ``restarts`` further runs at a random point of the sphere ‖ε‖ = ρ. Then
    ``steps`` times ε ← Proj(ε + η·ρ·∇L(w + ε)/‖∇L(w + ε)‖), η = ``step_fraction``, Proj the
    radial projection onto the ball. The value is the best L(w + ε) − L(w) over every iterate
    (a lower bound of the true maximum, at least the rise at the SAM point). Parameters are all of
    the model's, the loss and frames those of :func:`sharpness`; weights are copied back
    exactly. Costs (1 + restarts)·steps + 1 loss-and-gradient passes and 1 + restarts loss
    passes."""
    if not (math.isfinite(rho) and rho > 0):
        raise LegatoError(f"worst-case sharpness needs rho > 0 (got {rho})")
    if steps < 0 or restarts < 0:
        raise LegatoError(f"worst-case sharpness needs steps, restarts >= 0 (got {steps}, {restarts})")
    if not (math.isfinite(step_fraction) and step_fraction > 0):
        raise LegatoError(f"worst-case sharpness needs step_fraction > 0 (got {step_fraction})")
    params = list(model.parameters())
    saved = [p.detach().clone() for p in params]
    gen = torch.Generator().manual_seed(seed)
    trace: list[dict[str, float]] = []
    best = {"value": -math.inf, "eps_norm": 0.0, "restart": 0, "step": 0}
    n_grad = 0
    bar = tqdm(
        total=1 + (restarts + 1) * (steps + 1),
        desc=f"worst-case sharpness (rho={rho:g})",
        disable=not progress,
    )
    try:
        base, g0 = loss_and_gradient(model, batches, spec, params)
        n_grad += 1
        bar.update()
        assert g0 is not None
        g0_norm = _norm(g0)
        for r in range(restarts + 1):
            if r == 0 and g0_norm > 0:
                eps = [g * (rho / g0_norm) for g in g0]  # the SAM step
            else:
                eps = _random_sphere(params, rho, gen)
            for k in range(steps + 1):
                with torch.no_grad():
                    for p, s, e in zip(params, saved, eps, strict=True):
                        p.copy_(s + e)
                last = k == steps
                loss, g = loss_and_gradient(model, batches, spec, params, need_grad=not last)
                n_grad += 0 if last else 1
                value, e_norm = loss - base, _norm(eps)
                trace.append({"restart": r, "step": k, "value": value, "eps_norm": e_norm})
                if value > best["value"]:
                    best = {"value": value, "eps_norm": e_norm, "restart": r, "step": k}
                bar.update()
                bar.set_postfix(best=f"{best['value']:.3g}")
                if last:
                    break
                assert g is not None
                g_norm = _norm(g)
                if not g_norm > 0:  # a stationary point: nothing left to climb
                    bar.update(steps - k)
                    break
                eta = step_fraction * rho / g_norm
                eps = [e + eta * d for e, d in zip(eps, g, strict=True)]
                norm = _norm(eps)
                if norm > rho:
                    eps = [e * (rho / norm) for e in eps]
    finally:
        bar.close()
        with torch.no_grad():
            for p, s in zip(params, saved, strict=True):
                p.copy_(s)
    return WorstCaseResult(
        rho=rho,
        steps=steps,
        step_fraction=step_fraction,
        restarts=restarts,
        value=float(best["value"]),
        base_loss=base,
        eps_norm=float(best["eps_norm"]),
        grad_norm=g0_norm,
        best_restart=int(best["restart"]),
        best_step=int(best["step"]),
        n_gradients=n_grad,
        n_parameters=sum(p.numel() for p in params),
        trace=trace,
    )
