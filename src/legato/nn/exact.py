"""Numeric constants that stay exact in the module's dtype through dtype conversions.

A model is built under torch's default dtype (float32) and converted afterwards, so a
constant computed in float64 and stored as float32 would keep float32 digits in a float64
model. :class:`ExactConstants` keeps an exact float64 copy of each registered tensor and,
after every conversion (``.to``, ``.double()``, ``.half()``, ``.cuda()`` …), writes it back in the
tensor's new dtype and device.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def _holds(t: torch.Tensor, exact: torch.Tensor) -> bool:
    """Whether ``t`` equals ``exact`` rounded to t's dtype (meta tensors hold no values: yes)."""
    if t.is_meta:
        return True
    if not t.is_floating_point() or t.shape != exact.shape:
        return False
    return torch.equal(t.detach(), exact.to(device=t.device, dtype=t.dtype))


class ExactConstants(nn.Module):
    """Mixin: tensors registered with :meth:`_set_exact` are restored from an exact float64
    master after each conversion, as long as they still hold the master's value rounded to
    their dtype. A parameter that has been trained, or a buffer loaded with other values,
    holds something else and converts as usual; so state_dict contents always win.

    The master is written into the converted tensor in place (``copy_``), which keeps what
    the conversion chose (dtype, device, shared memory) and only replaces the digits.
    """

    __jit_ignored_attributes__ = ["_exact"]

    def _set_exact(self, name: str, value: torch.Tensor) -> None:
        """Record ``value`` (any float dtype, computed in float64) as the exact value of the
        parameter or buffer ``name``, which must already hold it rounded to its dtype."""
        if "_exact" not in self.__dict__:
            self._exact: dict[str, torch.Tensor] = {}
        self._exact[name] = value.detach().to(device="cpu", dtype=torch.float64).clone()

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> ExactConstants:
        exact: dict[str, torch.Tensor] = self.__dict__.get("_exact", {})
        untouched = [n for n, x in exact.items() if _holds(getattr(self, n), x)]
        super()._apply(fn, recurse)
        with torch.no_grad():
            for name in untouched:
                t = getattr(self, name)
                if t.is_floating_point() and not t.is_meta:
                    t.copy_(exact[name])
        return self
