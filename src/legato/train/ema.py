"""Exponential moving average (EMA) of model weights, with update-count warm-up.

After the n-th update (n counted from 0) the shadow weights s become

    d = min(decay, (1 + n) / (10 + n)),   s ← d·s + (1 − d)·w

so early updates follow the weights closely (d = 0.1, 0.18, 0.25, ...) and the average
settles at ``decay`` (paper: 0.99) after about 900 updates. Validation and the saved
model use the shadow weights, swapped in with :meth:`EMA.average_parameters`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from legato.errors import LegatoError


class EMA:
    """Shadow copy of a model's floating-point parameters."""

    def __init__(self, model: torch.nn.Module, decay: float = 0.99, use_num_updates: bool = True):
        if not 0.0 <= decay <= 1.0:
            raise LegatoError(f"EMA decay must be in [0, 1], got {decay}")
        self.decay = float(decay)
        self.use_num_updates = bool(use_num_updates)
        self.num_updates = 0
        self.names = [n for n, p in model.named_parameters() if p.requires_grad]
        params = dict(model.named_parameters())
        self.shadow: dict[str, torch.Tensor] = {n: params[n].detach().clone() for n in self.names}

    def current_decay(self) -> float:
        """Decay used by the next update."""
        if not self.use_num_updates:
            return self.decay
        n = self.num_updates
        return min(self.decay, (1.0 + n) / (10.0 + n))

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        """s ← d·s + (1 − d)·w for every tracked parameter."""
        d = self.current_decay()
        params = dict(model.named_parameters())
        for n in self.names:
            s = self.shadow[n]
            s.mul_(d).add_(params[n].detach(), alpha=1.0 - d)
        self.num_updates += 1

    @torch.no_grad()
    def copy_to(self, model: torch.nn.Module) -> None:
        """Overwrite the model's parameters with the shadow weights."""
        params = dict(model.named_parameters())
        for n in self.names:
            params[n].copy_(self.shadow[n])

    @contextmanager
    def average_parameters(self, model: torch.nn.Module) -> Iterator[torch.nn.Module]:
        """Temporarily put the shadow weights into ``model``; the live weights come back
        (bit for bit) on exit, also on error."""
        params = dict(model.named_parameters())
        backup = {n: params[n].detach().clone() for n in self.names}
        self.copy_to(model)
        try:
            yield model
        finally:
            with torch.no_grad():
                for n in self.names:
                    params[n].copy_(backup[n])

    def state_dict(self) -> dict[str, Any]:
        return {
            "decay": self.decay,
            "use_num_updates": self.use_num_updates,
            "num_updates": self.num_updates,
            "shadow": {n: t.clone() for n, t in self.shadow.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        missing = set(self.names) - set(state["shadow"])
        if missing:
            raise LegatoError(f"EMA state lacks parameters: {', '.join(sorted(missing))}")
        self.decay = float(state["decay"])
        self.use_num_updates = bool(state["use_num_updates"])
        self.num_updates = int(state["num_updates"])
        for n in self.names:
            self.shadow[n].copy_(state["shadow"][n])
