"""Sharpness-aware minimisation (SAM, Foret et al. 2021) and adaptive SAM (ASAM, Kwon et al.
2021) as a wrapper around any ``torch.optim.Optimizer``.

One SAM step with loss L at weights w:

1. g = ∇L(w)                                   (caller: forward + backward)
2. ε = ρ · g / ‖g‖₂        (SAM; global norm over every parameter)
   ε = ρ · T² g / ‖T g‖₂   (ASAM; T = |w| + η elementwise)
   w ← w + ε                                    (:meth:`SAM.first_step`)
3. g' = ∇L(w + ε)                               (caller: forward + backward again)
4. w ← the saved w (exact copy, no round-off), then the base optimiser steps with g'
                                                (:meth:`SAM.second_step`)

Either call ``first_step`` / ``second_step`` around your own forward/backward passes, or
pass a closure to :meth:`SAM.step`, which calls it twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim import Optimizer

from legato.errors import LegatoError

#: added to ‖g‖ so that a zero gradient gives ε = 0 instead of NaN
_NORM_EPS = 1e-12


class SAM(Optimizer):
    """SAM / ASAM around a base optimiser.

    Args:
        params: parameters (or parameter groups) to optimise.
        base_optimizer: an optimiser *class* (e.g. ``torch.optim.Adam``) constructed on
            ``params`` with ``**base_kwargs``, or an already constructed optimiser instance
            (then ``params`` must be ``None``).
        rho: radius of the neighbourhood (ρ ≥ 0; ρ = 0 reproduces the base optimiser).
        adaptive: ASAM — perturb each weight in proportion to its magnitude.
        eta: ASAM's offset η in T = |w| + η (0 for the common form T = |w|).

    ``param_groups`` and ``state_dict`` are those of the base optimiser, so learning-rate
    schedulers act on the base optimiser and checkpoints hold its state.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]] | None,
        base_optimizer: type[Optimizer] | Callable[..., Optimizer] | Optimizer,
        rho: float = 0.05,
        adaptive: bool = False,
        eta: float = 0.0,
        **base_kwargs: Any,
    ) -> None:
        if rho < 0:
            raise LegatoError(f"SAM rho must be >= 0, got {rho}")
        if eta < 0:
            raise LegatoError(f"ASAM eta must be >= 0, got {eta}")
        if isinstance(base_optimizer, Optimizer):
            if params is not None or base_kwargs:
                raise LegatoError("pass either an optimiser instance or params + class, not both")
            base = base_optimizer
        else:
            if params is None:
                raise LegatoError("SAM needs params when base_optimizer is a class")
            base = base_optimizer(params, **base_kwargs)
        self.base_optimizer: Optimizer = base
        self.rho = float(rho)
        self.adaptive = bool(adaptive)
        self.eta = float(eta)
        # Register the base optimiser's parameters with torch's Optimizer machinery, then
        # share the very same group dicts so that lr changes reach the base optimiser.
        super().__init__(
            [{"params": g["params"]} for g in base.param_groups],
            dict(rho=self.rho, adaptive=self.adaptive),
        )
        self.param_groups = base.param_groups
        self.defaults.update(base.defaults)
        self._saved: dict[torch.Tensor, torch.Tensor] = {}

    # ------------------------------------------------------------------ core
    def _params_with_grad(self) -> list[torch.Tensor]:
        return [p for g in self.param_groups for p in g["params"] if p.grad is not None]

    def _scale(self, p: torch.Tensor) -> torch.Tensor | float:
        """T for one parameter: |w| + η for ASAM, 1 for SAM."""
        return p.detach().abs() + self.eta if self.adaptive else 1.0

    def grad_norm(self) -> torch.Tensor:
        """‖T g‖₂ over all parameters (T = 1 for SAM), computed in float64."""
        params = self._params_with_grad()
        if not params:
            return torch.zeros((), dtype=torch.float64)
        sq = [(self._scale(p) * p.grad).double().pow(2).sum() for p in params]
        return torch.stack(sq).sum().sqrt()

    @torch.no_grad()
    def first_step(self, zero_grad: bool = False) -> None:
        """Move to w + ε using the gradients currently stored in ``p.grad``."""
        if self._saved:
            raise RuntimeError("SAM.first_step called twice without second_step")
        factor = self.rho / (float(self.grad_norm()) + _NORM_EPS)
        for p in self._params_with_grad():
            self._saved[p] = p.detach().clone()
            t = self._scale(p)
            eps = (t * t) * p.grad * factor if self.adaptive else p.grad * factor
            p.add_(eps.to(p.dtype))
        if zero_grad:
            self.zero_grad(set_to_none=True)

    @torch.no_grad()
    def restore(self) -> None:
        """Put back the weights saved by :meth:`first_step` (exact copy)."""
        for p, w in self._saved.items():
            p.copy_(w)
        self._saved.clear()

    @torch.no_grad()
    def second_step(self, zero_grad: bool = False) -> None:
        """Restore w and let the base optimiser step with the gradients at w + ε."""
        if not self._saved and self.rho > 0:
            raise RuntimeError("SAM.second_step called without first_step")
        self.restore()
        self.base_optimizer.step()
        if zero_grad:
            self.zero_grad(set_to_none=True)

    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        """Full SAM step. ``closure`` must zero nothing, run forward + backward and return
        the loss; it is called at w and at w + ε. Returns the loss at w."""
        if closure is None:
            raise LegatoError("SAM.step needs a closure (or call first_step / second_step yourself)")
        self.zero_grad(set_to_none=True)
        with torch.enable_grad():
            loss = closure()
        self.first_step(zero_grad=True)
        with torch.enable_grad():
            closure()
        self.second_step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.base_optimizer.zero_grad(set_to_none=set_to_none)

    # ------------------------------------------------------------ state i/o
    def state_dict(self) -> dict[str, Any]:
        return self.base_optimizer.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.base_optimizer.load_state_dict(state_dict)
        self.param_groups = self.base_optimizer.param_groups

    def __repr__(self) -> str:
        kind = "ASAM" if self.adaptive else "SAM"
        return f"{kind}(rho={self.rho}, base={self.base_optimizer!r})"
