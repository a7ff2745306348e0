"""Bias-free MLP with e3nn-style normalisation (unit-variance weights, 1/√fan_in)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn


def _silu_second_moment_constant() -> float:
    """c such that E[(c·silu(z))²] = 1 for z ~ N(0, 1), by quadrature."""
    z = np.linspace(-12.0, 12.0, 200_001)
    pdf = np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    silu = z / (1.0 + np.exp(-z))
    second = np.trapezoid(silu * silu * pdf, z)
    return float(1.0 / math.sqrt(second))


SILU_NORM = _silu_second_moment_constant()  # ≈ 1.679


class _ScaledLinear(nn.Module):
    """y = [c·silu(x) if act_before else x] @ (W / √fan_in); W unit-variance uniform."""

    def __init__(self, fan_in: int, fan_out: int, act_before: bool) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(fan_in, fan_out).uniform_(-math.sqrt(3), math.sqrt(3)))
        self.scale = 1.0 / math.sqrt(fan_in)
        self.act_before = act_before
        self.act_scale = SILU_NORM

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [n, in] -> [n, out]
        if self.act_before:
            x = torch.nn.functional.silu(x) * self.act_scale
        return x @ (self.weight * self.scale)


class ScaledMLP(nn.Module):
    """x → W_k … SiLU(W_1 x): bias-free, SiLU only *between* linear layers.

    Weights are stored with unit variance (uniform ±√3) and scaled by 1/√fan_in at run
    time; SiLU outputs are multiplied by their second-moment constant.
    ``dims = [in, hidden…, out]``; a two-entry ``dims`` is a single linear map.
    """

    def __init__(self, dims: Sequence[int]) -> None:
        super().__init__()
        dims = [int(d) for d in dims]
        if len(dims) < 2:
            raise ValueError("an MLP needs at least input and output dimensions")
        self.dims = dims
        self.layers = nn.ModuleList(
            [_ScaledLinear(a, b, k > 0) for k, (a, b) in enumerate(zip(dims[:-1], dims[1:]))]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [n, in] -> [n, out]
        for layer in self.layers:
            x = layer(x)
        return x
