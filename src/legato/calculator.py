"""ASE calculator backed by a legato model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from ase.calculators.calculator import Calculator, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from legato.data import atoms_to_graph, to_device
from legato.models import Allegro, load_model
from legato.models.fast import fast_model
from legato.models.io import check_device, model_dtype


def select_device(device: str | torch.device | None = None) -> torch.device:
    """``None``/"auto" → CUDA when available, else CPU; otherwise the device asked for (an
    unknown name or an absent GPU is a LegatoError)."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return check_device(device)


class LegatoCalculator(Calculator):
    """``LegatoCalculator(model_or_path, device="cpu", compile=None)``: energy, free_energy,
    energies, forces and (for 3-D periodic cells) stress, in eV, eV/Å and eV/Å³.

    Evaluation uses the fast compiled path (:mod:`legato.models.fast`) unless
    ``compile=False`` or ``LEGATO_COMPILE=0``; ``self.model`` is the eager model either way.
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress"]

    def __init__(
        self,
        model: Allegro | str | Path,
        device: str | torch.device | None = "cpu",
        compile: bool | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.device = select_device(device)
        if isinstance(model, (str, Path)):
            model = load_model(model, map_location=self.device)
        self.model = model.to(self.device).eval()
        self.dtype = model_dtype(self.model)
        self.potential = fast_model(self.model, compile)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        graph = atoms_to_graph(
            self.atoms, self.model.type_names, self.model.r_max, self.dtype, with_labels=False
        )
        out = self.potential(to_device(graph, self.device))
        energy = float(out["energy"].sum())
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "energies": out["atomic_energy"].detach().cpu().double().numpy(),
            "forces": out["forces"].detach().cpu().double().numpy(),
        }
        if np.all(self.atoms.pbc):
            stress = out["stress"][0].detach().cpu().double().numpy()
            self.results["stress"] = full_3x3_to_voigt_6_stress(stress)
