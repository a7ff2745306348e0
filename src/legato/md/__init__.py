"""Batched molecular dynamics with per-replica failure detection (see docs/md.md)."""

from legato.md.config import MDConfig, load_config, validate_config
from legato.md.failure import Failure, FailureDetector
from legato.md.forces import ForceField
from legato.md.integrators import (
    LangevinBAOAB,
    NoseHooverChain,
    VelocityVerlet,
    make_integrator,
    maxwell_boltzmann,
)
from legato.md.neighbors import VerletList
from legato.md.potentials import HarmonicPairs, LennardJones
from legato.md.runner import MDResult, MDRunner, format_summary, run_md
from legato.md.state import MDState, state_from_atoms

__all__ = [
    "Failure",
    "FailureDetector",
    "ForceField",
    "HarmonicPairs",
    "LangevinBAOAB",
    "LennardJones",
    "MDConfig",
    "MDResult",
    "MDRunner",
    "MDState",
    "NoseHooverChain",
    "VelocityVerlet",
    "VerletList",
    "format_summary",
    "load_config",
    "make_integrator",
    "maxwell_boltzmann",
    "run_md",
    "state_from_atoms",
    "validate_config",
]
