"""Models: the Allegro potential, builders, save/load and TorchScript export."""

from legato.models.allegro import Allegro, count_parameters
from legato.models.io import build_model, export_torchscript, load_model, save_model

__all__ = ["Allegro", "build_model", "count_parameters", "export_torchscript", "load_model", "save_model"]
