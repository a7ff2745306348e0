"""Building blocks of the Allegro model (radial basis, cutoff, MLPs, tensor products)."""

from legato.nn.mlp import ScaledMLP
from legato.nn.radial import BesselBasis, PolynomialCutoff
from legato.nn.tensor_product import AllegroPaths, ChannelwiseTP, EquivariantLinear

__all__ = [
    "AllegroPaths",
    "BesselBasis",
    "ChannelwiseTP",
    "EquivariantLinear",
    "PolynomialCutoff",
    "ScaledMLP",
]
