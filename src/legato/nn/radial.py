"""Radial basis and smooth cutoff envelope."""

from __future__ import annotations

import math

import torch
from torch import nn

from legato.nn.exact import ExactConstants


class PolynomialCutoff(nn.Module):
    """u(x) = 1 − (p+1)(p+2)/2·x^p + p(p+2)·x^{p+1} − p(p+1)/2·x^{p+2}, x = r/r_max; 0 beyond.

    u, u' and u'' vanish at r = r_max, so energies and forces are smooth there.
    """

    def __init__(self, r_max: float, p: float = 7.0) -> None:
        super().__init__()
        self.r_max = float(r_max)
        self.p = float(p)

    def forward(self, r: torch.Tensor) -> torch.Tensor:  # [n_edges] -> [n_edges]
        p = self.p
        x = r / self.r_max
        u = (
            1.0
            - (p + 1.0) * (p + 2.0) / 2.0 * torch.pow(x, p)
            + p * (p + 2.0) * torch.pow(x, p + 1.0)
            - p * (p + 1.0) / 2.0 * torch.pow(x, p + 2.0)
        )
        return u * (x < 1.0).to(u.dtype)


class BesselBasis(ExactConstants):
    """b_n(r) = (2/r_max)·sin(w_n r/r_max)/r with trainable w_n (init nπ), standardised.

    Each basis function is shifted and scaled to zero mean and unit variance over r uniform
    on (0, r_max], using statistics computed once at construction (in float64). The initial
    w_n and the statistics are kept exact in the module's dtype through conversions (see
    :class:`ExactConstants`) until training or a loaded state_dict changes them.
    """

    def __init__(self, r_max: float, num_basis: int = 8, n_grid: int = 4096) -> None:
        super().__init__()
        self.r_max = float(r_max)
        self.prefactor = 2.0 / self.r_max
        dtype = torch.get_default_dtype()
        w = torch.arange(1, num_basis + 1, dtype=torch.float64) * math.pi
        self.bessel_weights = nn.Parameter(w.to(dtype))
        with torch.no_grad():
            r = torch.linspace(0.0, self.r_max, n_grid + 1, dtype=torch.float64)[1:]
            b = self._raw(r, w)
            mean, inv_std = b.mean(0), 1.0 / b.std(0)
        self.register_buffer("mean", mean.to(dtype))
        self.register_buffer("inv_std", inv_std.to(dtype))
        for name, value in (("bessel_weights", w), ("mean", mean), ("inv_std", inv_std)):
            self._set_exact(name, value)

    def _raw(self, r: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        arg = w.unsqueeze(0) * (r / self.r_max).unsqueeze(-1)  # [n_edges, n_basis]
        return self.prefactor * torch.sin(arg) / r.unsqueeze(-1)

    def forward(self, r: torch.Tensor) -> torch.Tensor:  # [n_edges] -> [n_edges, n_basis]
        return (self._raw(r, self.bessel_weights) - self.mean) * self.inv_std
