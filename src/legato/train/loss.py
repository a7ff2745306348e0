"""Training loss: per-atom energy MSE + force MSE (+ optional stress MSE), with coefficients.

    L = c_E · mean_frames[((E_pred − E_ref) / N_atoms / σ)²]
      + c_F · mean_components[((F_pred − F_ref) / σ)²]
      + c_S · mean_components[((S_pred − S_ref) / σ)²]

σ is a fixed normalisation (eV/Å): 1 gives the loss in eV-based units; the default
(``loss.normalize: true`` in the config) uses the training set's force RMS, i.e. the loss in
the model's internal units, as the public Allegro code computed it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from legato.data import keys as K
from legato.errors import LegatoError


@dataclass(frozen=True)
class LossSpec:
    """Coefficients and normalisation of the loss."""

    energy: float = 1.0
    forces: float = 1.0
    stress: float = 0.0
    scale: float = 1.0  # σ, eV/Å; errors are divided by it

    def __post_init__(self) -> None:
        if min(self.energy, self.forces, self.stress) < 0:
            raise LegatoError("loss coefficients must be >= 0")
        if self.energy == self.forces == self.stress == 0:
            raise LegatoError("all loss coefficients are zero")
        if not self.scale > 0:
            raise LegatoError(f"loss scale must be > 0, got {self.scale}")

    @property
    def needs_stress(self) -> bool:
        return self.stress > 0


def per_atom_energy_error(pred: dict[str, torch.Tensor], graph: dict[str, torch.Tensor]):
    """(E_pred − E_ref) / N per frame, eV/atom. Shape [n_frames]."""
    n = graph[K.NUM_ATOMS].to(pred[K.TOTAL_ENERGY].dtype)
    return (pred[K.TOTAL_ENERGY] - graph[K.TOTAL_ENERGY]) / n


def loss_terms(
    pred: dict[str, torch.Tensor], graph: dict[str, torch.Tensor], spec: LossSpec
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Total loss (scalar, differentiable) and its unweighted terms (detached)."""
    terms: dict[str, torch.Tensor] = {}
    total = torch.zeros((), dtype=pred[K.FORCES].dtype, device=pred[K.FORCES].device)
    inv = 1.0 / spec.scale
    if spec.energy > 0:
        _require(graph, K.TOTAL_ENERGY, "energy")
        e = per_atom_energy_error(pred, graph) * inv  # [n_frames]
        mse = e.pow(2).mean()
        total = total + spec.energy * mse
        terms["energy"] = mse.detach()
    if spec.forces > 0:
        _require(graph, K.FORCES, "forces")
        f = (pred[K.FORCES] - graph[K.FORCES]) * inv  # [n_atoms, 3]
        mse = f.pow(2).mean()
        total = total + spec.forces * mse
        terms["forces"] = mse.detach()
    if spec.stress > 0:
        _require(graph, K.STRESS, "stress")
        s = (pred[K.STRESS] - graph[K.STRESS]) * inv  # [n_frames, 3, 3]
        mse = s.pow(2).mean()
        total = total + spec.stress * mse
        terms["stress"] = mse.detach()
    return total, terms


def _require(graph: dict[str, torch.Tensor], key: str, name: str) -> None:
    if key not in graph:
        raise LegatoError(
            f"the data has no {name} labels but the loss uses them "
            f"(set the {name} coefficient to 0 or label the data)"
        )
