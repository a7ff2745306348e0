"""Path-integral MD on the batched MD engine: ring polymers as replicas (see docs/pimd.md)."""

from legato.pimd.config import PIMDConfig, load_pimd_config, validate_pimd_config
from legato.pimd.estimators import block_average
from legato.pimd.integrator import RingPolymerIntegrator, polymer_momenta
from legato.pimd.normal_modes import free_frequencies, normal_mode_matrix, polymer_view, ring_layout
from legato.pimd.rdf import bead_rdf
from legato.pimd.runner import PIMDRunner, format_pimd_summary, run_pimd

__all__ = [
    "PIMDConfig",
    "PIMDRunner",
    "RingPolymerIntegrator",
    "bead_rdf",
    "block_average",
    "format_pimd_summary",
    "free_frequencies",
    "load_pimd_config",
    "normal_mode_matrix",
    "polymer_momenta",
    "polymer_view",
    "ring_layout",
    "run_pimd",
    "validate_pimd_config",
]
