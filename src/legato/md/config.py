"""Schema of an MD run (``legato md CONFIG.yaml``), validated with pydantic.

Unknown keys are errors that name the nearest valid key. See docs/md.md for every field.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from legato.config_file import read_yaml_mapping, validate_model

#: an instantaneous temperature above this (K) is a runaway replica (see legato.md.failure);
#: run temperatures must stay below it
RUNAWAY_TEMPERATURE_K = 1.0e6


# -------------------------------------------------------------------- shared constrained types
# The MD settings that legato.workflows.protocol (time-to-failure runs) also exposes are typed
# once here, so the MD config, the tfail protocol, its CLI flags and the study config cannot
# disagree on their limits or on what "disabled" means.
def _window(w: object) -> object:
    if w is None or w == "auto":
        return w
    if isinstance(w, (list, tuple)) and len(w) == 2:
        try:
            lo, hi = float(w[0]), float(w[1])
        except (TypeError, ValueError):
            lo = hi = math.nan
        if not (math.isfinite(lo) and math.isfinite(hi) and 0 <= lo < hi):
            raise ValueError(f"must be [LO, HI] with 0 <= LO < HI, got {[lo, hi]}")
        return (lo, hi)
    raise ValueError("must be [LO, HI] (in K), 'auto' or none")


def _pairs(pairs: dict[str, float] | None) -> dict[str, float] | None:
    from ase.data import atomic_numbers

    for key, d in (pairs or {}).items():
        els = key.split("-")
        if len(els) != 2 or not all(e in atomic_numbers for e in els):
            raise ValueError(f"pair {key!r} is not two element symbols joined by '-', e.g. 'H-H'")
        if not (math.isfinite(d) and d > 0):
            raise ValueError(f"distance of {key} must be > 0, got {d}")
    return pairs or None


def _zero_is_none(d: float | None) -> float | None:
    return None if d == 0 else d


TemperatureK = Annotated[float, Field(ge=0)]
TimestepFs = Annotated[float, Field(gt=0)]
#: Nosé–Hoover damping time; None: 100 time steps
ThermostatTauFs = Annotated[float | None, Field(gt=0)]
CheckEvery = Annotated[int, Field(ge=1)]
#: [LO, HI] in K; "auto" = [T/2, 3T/2] (the public code's [100 K, 300 K] at 200 K); None disables
TemperatureWindowK = Annotated[tuple[float, float] | Literal["auto"] | None, BeforeValidator(_window)]
#: closest allowed distance of any two atoms; None (or 0, stored as None) disables
MinDistanceA = Annotated[float | None, Field(ge=0), AfterValidator(_zero_is_none)]
#: closest allowed distance per element pair, e.g. {"H-H": 1.0}; None (or {}) disables
PairDistancesA = Annotated[dict[str, float] | None, AfterValidator(_pairs)]
OutlierSigma = Annotated[float, Field(gt=0)]
#: more force outliers than this is a failure; None: outliers are counted only
MaxForceOutliers = Annotated[int | None, Field(ge=0)]
SkinA = Annotated[float, Field(ge=0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class StageConfig(_Strict):
    """One stage of the schedule. ``steps: null`` (last stage only) runs to ``steps`` in total."""

    ensemble: Literal["nve", "nvt", "langevin"]
    steps: int | None = Field(default=None, ge=0)
    temperature_K: TemperatureK | None = None  # default: the run's temperature_K


class ThermostatConfig(_Strict):
    tau_fs: ThermostatTauFs = None  # Nosé–Hoover damping; null = 100·timestep
    chain_length: int = Field(default=3, ge=1)
    friction_per_fs: float = Field(default=0.01, ge=0)  # Langevin γ


class ReferencePotentialConfig(_Strict):
    """A pair potential instead of a model (testing, demonstrations)."""

    kind: Literal["lennard_jones", "harmonic_pairs"] = "lennard_jones"
    epsilon_eV: float = 0.0104
    sigma_A: float = 3.40
    k_eV_per_A2: float = 1.0
    r0_A: float = 1.0
    r_max: float = 8.5


class NeighborConfig(_Strict):
    skin_A: SkinA = 1.0


class ChecksConfig(_Strict):
    every: CheckEvery = 10
    temperature_window_K: TemperatureWindowK = "auto"
    #: σ of the training force components; "auto" = from the model file, else from step 0
    force_sigma_eV_A: float | Literal["auto"] = "auto"
    outlier_sigma: OutlierSigma = 5.0
    max_force_outliers: MaxForceOutliers = None
    min_distance_A: MinDistanceA = 0.5
    #: a local, per-molecule failure (atoms of intact molecules never come that close; a
    #: model with a spurious attraction lets them) that the global temperature window misses
    min_pair_distance_A: PairDistancesA = None
    max_drift_eV_per_atom: float | None = Field(default=None, gt=0)


class OutputConfig(_Strict):
    directory: str = "md_run"
    thermo_every: int = Field(default=10, ge=1)
    trajectory_every: int = Field(default=100, ge=0)  # 0: no trajectory
    checkpoint_every: int = Field(default=1000, ge=0)  # 0: only at the end
    progress: bool = True


class MDConfig(_Strict):
    """An MD run: R replicas of the structure(s), a schedule of ensembles, checks, outputs."""

    structure: str | list[str]  # ASE-readable file(s); replicas cycle through them
    structure_index: int = 0  # frame of each file
    supercell: tuple[int, int, int] = (1, 1, 1)
    model: str | None = None  # a saved legato model
    reference_potential: ReferencePotentialConfig | None = None
    device: str = "cpu"
    #: fast compiled model evaluation (legato.models.fast); false: the eager reference path;
    #: null: on unless LEGATO_COMPILE=0 (what --no-compile sets)
    compile: bool | None = None
    replicas: int = Field(default=1, ge=1)
    seed: int = Field(default=0, ge=0)
    timestep_fs: TimestepFs = 2.0
    temperature_K: TemperatureK = 200.0
    #: "maxwell_boltzmann" at temperature_K, or "structure": the momenta stored with it
    initial_velocities: Literal["maxwell_boltzmann", "structure"] = "maxwell_boltzmann"
    exact_initial_temperature: bool = True  # rescale initial velocities to exactly T
    steps: int = Field(default=10000, ge=0)  # total over the schedule
    schedule: list[StageConfig] = Field(
        default_factory=lambda: [
            StageConfig(ensemble="nvt", steps=1000),
            StageConfig(ensemble="nve"),
        ]
    )
    thermostat: ThermostatConfig = Field(default_factory=ThermostatConfig)
    neighbor: NeighborConfig = Field(default_factory=NeighborConfig)
    checks: ChecksConfig = Field(default_factory=ChecksConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)

    @model_validator(mode="after")
    def _consistent(self) -> MDConfig:
        if (self.model is None) == (self.reference_potential is None):
            raise ValueError("give exactly one of 'model' and 'reference_potential'")
        if not self.schedule:
            raise ValueError("schedule needs at least one stage")
        for st in self.schedule[:-1]:
            if st.steps is None:
                raise ValueError("only the last schedule stage may omit 'steps'")
        if min(self.supercell) < 1:
            raise ValueError("supercell entries must be >= 1")
        self._check_temperatures()
        return self

    def _check_temperatures(self) -> None:
        """Settings that would make every replica fail at step 0 are config errors."""
        limit = RUNAWAY_TEMPERATURE_K
        if self.temperature_K >= limit:
            raise ValueError(f"temperature_K must be below the runaway bound {limit:g}")
        for k, st in enumerate(self.schedule):
            t = self.temperature_K if st.temperature_K is None else st.temperature_K
            if t >= limit:
                raise ValueError(f"schedule stage {k}: temperature must be below the runaway bound {limit:g}")
            if st.ensemble == "nvt" and t <= 0:
                raise ValueError(
                    f"schedule stage {k} (nvt) needs a temperature above 0 K; "
                    "set temperature_K (a Nosé–Hoover thermostat at 0 K is undefined)"
                )
        w = self.checks.temperature_window_K
        if w == "auto" and self.temperature_K <= 0:
            raise ValueError(
                "checks.temperature_window_K 'auto' is [T/2, 3T/2] and needs temperature_K > 0; "
                "give LO,HI or null"
            )

    def stage_bounds(self) -> list[tuple[int, int]]:
        """[start, end) step of each stage; stages past ``steps`` are cut."""
        out, start = [], 0
        for st in self.schedule:
            n = self.steps - start if st.steps is None else st.steps
            end = min(start + max(n, 0), self.steps)
            out.append((start, end))
            start = end
        return out

    def temperature_window(self) -> tuple[float, float] | None:
        w = self.checks.temperature_window_K
        if w == "auto":
            return (0.5 * self.temperature_K, 1.5 * self.temperature_K)
        return None if w is None else (float(w[0]), float(w[1]))


def validate_config(data: dict) -> MDConfig:
    """Validate a config dict; errors become one LegatoError line."""
    return validate_model(MDConfig, data, "MD config")


def load_config(path: str | Path) -> MDConfig:
    """Read and validate a YAML MD config."""
    return validate_config(read_yaml_mapping(path))
