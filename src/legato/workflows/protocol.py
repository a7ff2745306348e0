"""The time-to-failure MD protocol: the one definition of its settings.

:class:`TfailProtocol` is the source of the ``legato tfail`` protocol flags (one flag per
field, ``--temperature-K`` from ``temperature_K``, help from the field's description), of the
study config's ``tfail`` section (:class:`legato.workflows.study_config.TfailSection`
subclasses it) and, through :meth:`TfailProtocol.md_config`, of the MD run of each batch.
Fields that are also MD-config fields use the constrained types of :mod:`legato.md.config`,
so their limits and their "disabled" value (None) are the MD config's.

Clocks: a run starts with ``nvt_steps`` of Nosé–Hoover NVT, then the ``production`` stage
(NVE, the paper's protocol, or NVT with the thermostat kept on, the public code's) of at
most ``max_steps`` steps. t_failure counts steps of the production stage (the production
clock); ``t_total_steps`` counts from step 0 (the total clock). See docs/study.md.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from legato.config_file import config_error
from legato.md.config import (
    RUNAWAY_TEMPERATURE_K,
    CheckEvery,
    MaxForceOutliers,
    MinDistanceA,
    OutlierSigma,
    PairDistancesA,
    SkinA,
    TemperatureK,
    TemperatureWindowK,
    ThermostatTauFs,
    TimestepFs,
)

#: fields added after the first protocol.json format: left out of to_dict() at their default,
#: so the recorded protocol of an older output folder still compares equal
_NEW_FIELDS = ("production", "min_pair_distance_A")


def _run_temperature(t: object) -> object:
    if isinstance(t, (int, float)) and not isinstance(t, bool) and not 0 < t < RUNAWAY_TEMPERATURE_K:
        raise ValueError(f"temperature must be in (0, {RUNAWAY_TEMPERATURE_K:g}) K")
    return t


def _cli(metavar: str) -> dict[str, str]:
    return {"metavar": metavar}


class TfailProtocol(BaseModel):
    """MD settings shared by every instance of a time-to-failure ensemble (module docstring).

    Invalid values raise one-line :class:`~legato.errors.LegatoError`\\ s."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    temperature_K: Annotated[TemperatureK, BeforeValidator(_run_temperature)] = Field(
        200.0,
        description="temperature in K (initial velocities, thermostat target)",
        json_schema_extra=_cli("T"),
    )
    timestep_fs: TimestepFs = Field(2.5, description="MD time step in fs", json_schema_extra=_cli("DT"))
    nvt_steps: int = Field(
        1000,
        ge=0,
        description="Nosé–Hoover NVT steps before the production stage",
        json_schema_extra=_cli("N"),
    )
    production: Literal["nve", "nvt"] = Field(
        "nve",
        description="ensemble of the production stage: nve (the paper's protocol) or nvt "
        "(the thermostat stays on for the whole run, as the public code)",
        json_schema_extra=_cli("{nve,nvt}"),
    )
    thermostat_tau_fs: ThermostatTauFs = Field(
        None,
        description="Nosé–Hoover time constant in fs (none: 100 time steps, as the paper's LAMMPS input)",
        json_schema_extra=_cli("TAU"),
    )
    max_steps: int = Field(
        10000,
        ge=1,
        description="production step budget; instances alive after it are recorded as censored",
        json_schema_extra=_cli("N"),
    )
    perturb_A: float = Field(
        0.01,
        ge=0,
        description="Gaussian displacement of every coordinate of the base box, in Å",
        json_schema_extra=_cli("SIGMA"),
    )
    check_every: CheckEvery = Field(
        10, description="steps between failure checks (as the paper's code)", json_schema_extra=_cli("N")
    )
    temperature_window_K: TemperatureWindowK = Field(
        "auto",
        description="an instance fails when its temperature leaves LO,HI (in K); "
        "auto is [T/2, 3T/2], none disables",
        json_schema_extra=_cli("LO,HI"),
    )
    min_distance_A: MinDistanceA = Field(
        0.5,
        description="an instance fails when two atoms come closer than D Å; none (or 0) disables",
        json_schema_extra=_cli("D"),
    )
    min_pair_distance_A: PairDistancesA = Field(
        None,
        description="an instance fails when two atoms of an element pair come closer than the pair's "
        "distance in Å, e.g. H-H=1.0,N-H=0.8 (reason pair_distance: a local, per-molecule failure); "
        "none disables",
        json_schema_extra=_cli("PAIR=D,..."),
    )
    max_force_outliers: MaxForceOutliers = Field(
        None,
        description="an instance fails when more than N atoms have a force beyond --outlier-sigma σ "
        "(none: outliers are counted, not a failure)",
        json_schema_extra=_cli("N"),
    )
    outlier_sigma: OutlierSigma = Field(
        5.0,
        description="a force component beyond K σ is an outlier (σ: spread of the training forces)",
        json_schema_extra=_cli("K"),
    )
    skin_A: SkinA = Field(1.0, description="neighbour-list skin in Å", json_schema_extra=_cli("S"))

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:  # kept as the cause: the CLI names the flag from it
            raise config_error(exc, type(self), "time-to-failure protocol") from exc

    # ------------------------------------------------------------------ records
    def to_dict(self) -> dict:
        """The protocol as JSON values (recorded in ``protocol.json``; ``TfailProtocol(**d)``
        rebuilds it). Fields added later are left out at their default."""
        d = {k: v for k, v in self.model_dump(mode="json").items() if k in TfailProtocol.model_fields}
        for key in _NEW_FIELDS:
            if d[key] == TfailProtocol.model_fields[key].default:
                del d[key]
        return d

    # ------------------------------------------------------------------ clocks
    @property
    def production_stage(self) -> str:
        """The ``stage`` of a row that failed (or was censored) in the production stage:
        ``nve``, or ``nvt_production`` (distinct from ``nvt``, a failure before production)."""
        return "nve" if self.production == "nve" else "nvt_production"

    def clock(self, step: int) -> tuple[str, int]:
        """(stage, production-clock steps) of MD step ``step`` (total clock). A step of the
        first NVT stage (its last step included) is ``("nvt", 0)``."""
        if self.nvt_steps and step <= self.nvt_steps:
            return "nvt", 0
        return self.production_stage, step - self.nvt_steps

    # ------------------------------------------------------------------ MD run
    def md_config(self, replicas: int, checkpoint_every: int, progress: bool) -> dict:
        """A :class:`legato.md.MDConfig` dict for one batch of ``replicas`` instances.

        Production NVT is one NVT stage over both clocks: the thermostat's variables carry
        on through the start of production, as with one LAMMPS ``fix nvt``."""
        if self.production == "nvt":
            schedule = [{"ensemble": "nvt"}]
        else:
            schedule = [{"ensemble": "nve"}]
            if self.nvt_steps:
                schedule.insert(0, {"ensemble": "nvt", "steps": self.nvt_steps})
        w = self.temperature_window_K
        return {
            "structure": "<tfail instances>",
            "model": "<tfail model>",
            "replicas": replicas,
            "timestep_fs": self.timestep_fs,
            "temperature_K": self.temperature_K,
            "exact_initial_temperature": True,
            "steps": self.nvt_steps + self.max_steps,
            "schedule": schedule,
            "thermostat": {"tau_fs": self.thermostat_tau_fs},
            "neighbor": {"skin_A": self.skin_A},
            "checks": {
                "every": self.check_every,
                "temperature_window_K": list(w) if isinstance(w, tuple) else w,
                "outlier_sigma": self.outlier_sigma,
                "max_force_outliers": self.max_force_outliers,
                "min_distance_A": self.min_distance_A,
                "min_pair_distance_A": self.min_pair_distance_A,
            },
            "output": {
                "thermo_every": self.check_every,
                "trajectory_every": 0,
                "checkpoint_every": checkpoint_every,
                "progress": progress,
            },
        }
