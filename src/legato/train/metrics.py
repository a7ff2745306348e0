"""Error metrics accumulated over a dataset, in the units people quote.

- energy per atom: RMSE and MAE over frames of |E_pred − E_ref| / N, meV/atom
- forces: RMSE and MAE over all Cartesian components, overall and per species, meV/Å
  (RMSE = sqrt(mean of squared component errors), the Allegro/NequIP convention)
- stress (when labelled): RMSE and MAE over the 9 components, meV/Å³
- loss: the training loss of :mod:`legato.train.loss` over the whole dataset
  (dataset-level means, not a mean of batch means)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from legato.data import keys as K
from legato.train.loss import LossSpec, per_atom_energy_error

MEV = 1000.0


class MetricsAccumulator:
    """Sums of squared and absolute errors, added batch by batch."""

    def __init__(self, type_names: Sequence[str], spec: LossSpec) -> None:
        self.type_names = list(type_names)
        self.spec = spec
        n_s = len(self.type_names)
        self.e_sq = self.e_abs = 0.0
        self.n_frames = 0
        self.f_sq = torch.zeros(n_s, dtype=torch.float64)  # per species sums
        self.f_abs = torch.zeros(n_s, dtype=torch.float64)
        self.f_n = torch.zeros(n_s, dtype=torch.float64)  # number of components
        self.s_sq = self.s_abs = 0.0
        self.s_n = 0

    @torch.no_grad()
    def update(self, pred: dict[str, torch.Tensor], graph: dict[str, torch.Tensor]) -> None:
        if K.TOTAL_ENERGY in graph and K.TOTAL_ENERGY in pred:
            e = per_atom_energy_error(pred, graph).detach().double()  # [n_frames]
            self.e_sq += float(e.pow(2).sum())
            self.e_abs += float(e.abs().sum())
            self.n_frames += int(e.numel())
        if K.FORCES in graph and K.FORCES in pred:
            f = (pred[K.FORCES].detach() - graph[K.FORCES]).double()  # [n_atoms, 3]
            s = graph[K.SPECIES].cpu()
            n_s = len(self.type_names)
            self.f_sq += torch.bincount(s, f.pow(2).sum(1).cpu(), minlength=n_s)
            self.f_abs += torch.bincount(s, f.abs().sum(1).cpu(), minlength=n_s)
            self.f_n += 3.0 * torch.bincount(s, minlength=n_s).double()
        if K.STRESS in graph and K.STRESS in pred:
            d = (pred[K.STRESS].detach() - graph[K.STRESS]).double()  # [n_frames, 3, 3]
            self.s_sq += float(d.pow(2).sum())
            self.s_abs += float(d.abs().sum())
            self.s_n += int(d.numel())

    def compute(self) -> dict[str, float]:
        """Metrics dict; keys end in their unit (``_meV_atom``, ``_meV_A``, ``_meV_A3``)."""
        out: dict[str, float] = {}
        spec, inv2 = self.spec, 1.0 / self.spec.scale**2
        loss = 0.0
        if self.n_frames:
            e_mse = self.e_sq / self.n_frames
            out["energy_rmse_meV_atom"] = MEV * e_mse**0.5
            out["energy_mae_meV_atom"] = MEV * self.e_abs / self.n_frames
            out["loss_energy"] = e_mse * inv2
            loss += spec.energy * out["loss_energy"]
        n_f = float(self.f_n.sum())
        if n_f:
            f_mse = float(self.f_sq.sum()) / n_f
            out["forces_rmse_meV_A"] = MEV * f_mse**0.5
            out["forces_mae_meV_A"] = MEV * float(self.f_abs.sum()) / n_f
            for k, name in enumerate(self.type_names):
                n = float(self.f_n[k])
                if n:
                    out[f"forces_rmse_{name}_meV_A"] = MEV * (float(self.f_sq[k]) / n) ** 0.5
                    out[f"forces_mae_{name}_meV_A"] = MEV * float(self.f_abs[k]) / n
            out["loss_forces"] = f_mse * inv2
            loss += spec.forces * out["loss_forces"]
        if self.s_n:
            s_mse = self.s_sq / self.s_n
            out["stress_rmse_meV_A3"] = MEV * s_mse**0.5
            out["stress_mae_meV_A3"] = MEV * self.s_abs / self.s_n
            out["loss_stress"] = s_mse * inv2
            loss += spec.stress * out["loss_stress"]
        out["loss"] = loss
        return out


def format_table(metrics: dict[str, float], type_names: Sequence[str]) -> str:
    """Human-readable table of RMSE / MAE rows."""
    rows = [("quantity", "RMSE", "MAE", "unit")]

    def add(label: str, key: str, unit: str, suffix: str) -> None:
        r, m = metrics.get(f"{key}_rmse{suffix}"), metrics.get(f"{key}_mae{suffix}")
        if r is not None:
            rows.append((label, f"{r:.3f}", f"{m:.3f}", unit))

    add("energy / atom", "energy", "meV/atom", "_meV_atom")
    add("forces (all)", "forces", "meV/Å", "_meV_A")
    for name in type_names:
        add(f"forces {name}", "forces", "meV/Å", f"_{name}_meV_A")
    add("stress", "stress", "meV/Å³", "_meV_A3")
    widths = [max(len(r[c]) for r in rows) for c in range(4)]
    lines = ["  ".join(r[c].ljust(widths[c]) for c in range(4)).rstrip() for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)
