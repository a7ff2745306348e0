"""Schema of a PIMD run (``legato pimd CONFIG.yaml``): the MD schema (:mod:`legato.md.config`)
with ring-polymer settings. Unknown keys are errors. See docs/pimd.md for every field.

``replicas`` counts independent ring polymers; each has ``beads`` copies of the structure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from legato.config_file import read_yaml_mapping, validate_model
from legato.md.config import MDConfig, OutputConfig, _Strict


class PIMDStageConfig(_Strict):
    """One stage: ``nvt`` (PILE thermostat: sampling), ``trpmd`` (internal modes only:
    dynamics) or ``nve`` (RPMD). ``steps: null`` (last stage only) runs to ``steps``."""

    ensemble: Literal["nvt", "trpmd", "nve"]
    steps: int | None = Field(default=None, ge=0)

    @property
    def temperature_K(self) -> None:  # one temperature for the whole run (ω_P depends on it)
        return None


class PIMDThermostatConfig(_Strict):
    centroid: Literal["pile_l", "pile_g"] = "pile_l"  # Langevin or stochastic rescaling of the centroid
    tau_centroid_fs: float = Field(default=100.0, gt=0)  # centroid thermostat time (NVT stages)
    #: γ_k = 2λω_k on internal modes; null: 1 (critical damping) in nvt, 0.5 in trpmd
    pile_lambda: float | None = Field(default=None, gt=0)


class PIMDOutputConfig(OutputConfig):
    directory: str = "pimd_run"
    thermo_every: int = Field(default=5, ge=1)  # thermo.csv and estimators.csv rows
    trajectory_every: int = Field(default=10, ge=0)  # centroid frames; 0: none
    beads_every: int = Field(default=0, ge=0)  # frames of all beads (a multiple of trajectory_every); 0: none


class EstimatorConfig(_Strict):
    skip_steps: int | None = Field(default=None, ge=0)  # equilibration left out; null: the first stage
    blocks: int = Field(default=10, ge=2)  # block averaging


class PIMDConfig(MDConfig):
    """A PIMD run: ``replicas`` ring polymers of ``beads`` beads, a schedule, checks, outputs."""

    beads: int = Field(default=32, ge=1)
    timestep_fs: float = Field(default=0.5, gt=0)
    temperature_K: float = Field(default=200.0, gt=0)
    initial_velocities: Literal["maxwell_boltzmann"] = "maxwell_boltzmann"
    #: override masses per element (e.g. {H: 1.008} for NH3 from an ND3 file); null: the structure's
    masses_amu: dict[str, float] | None = None
    propagator: Literal["cayley", "exact"] = "cayley"
    schedule: list[PIMDStageConfig] = Field(
        default_factory=lambda: [
            PIMDStageConfig(ensemble="nvt", steps=1000),
            PIMDStageConfig(ensemble="trpmd"),
        ]
    )
    thermostat: PIMDThermostatConfig = Field(default_factory=PIMDThermostatConfig)
    estimators: EstimatorConfig = Field(default_factory=EstimatorConfig)
    output: PIMDOutputConfig = Field(default_factory=PIMDOutputConfig)

    @model_validator(mode="after")
    def _pimd_consistent(self) -> PIMDConfig:
        for el, m in (self.masses_amu or {}).items():
            if not m > 0:
                raise ValueError(f"masses_amu: mass of {el} must be > 0")
        out = self.output
        if out.beads_every and (not out.trajectory_every or out.beads_every % out.trajectory_every):
            raise ValueError("output.beads_every must be a multiple of output.trajectory_every")
        return self

    def skip_steps(self) -> int:
        """Steps left out of the averages: ``estimators.skip_steps`` or the first stage."""
        if self.estimators.skip_steps is not None:
            return self.estimators.skip_steps
        return self.stage_bounds()[0][1] if len(self.schedule) > 1 else 0


def validate_pimd_config(data: dict) -> PIMDConfig:
    """Validate a config dict; errors become one LegatoError line."""
    return validate_model(PIMDConfig, data, "PIMD config")


def load_pimd_config(path: str | Path) -> PIMDConfig:
    return validate_pimd_config(read_yaml_mapping(path))
