"""Schema of the robustness study v2 (``legato study CONFIG.yaml`` with ``version: 2``).

Study v2 trains several models per arm (one per seed; each seed draws its own training
subset, initial weights and batch order) and derives the arms from two training runs per
seed (docs/reproduction.md):

``legato``          SAM (ρ = ``rho``), ``epochs`` epochs, best validation loss;
``allegro``         Adam, best validation loss within the same ``epochs`` (half SAM's gradient
                    evaluations: SAM takes two per step);
``allegro_2x``      the same Adam run, best within ``adam_factor`` × ``epochs`` (equal compute);
``allegro_matched`` the same Adam run, the epoch whose validation force RMSE is closest to the
                    same seed's Legato model (accuracy-matched control).

``rho_grid`` adds the paper's Table 1: for its seeds, one more SAM run per ρ (arm
``legato_rho<ρ>``, run at the base size only); the Legato and Allegro arms of those seeds are
the grid's ρ = ``rho`` and ρ = 0 points. ``lmax_grid`` adds Table 4 the same way: one Adam run
of ``epochs`` epochs per l_max (arm ``allegro_lmax<l>``) beside the arms' own l_max.

Unknown keys are errors naming the nearest valid key; sections shared with study v1
(``tfail``, ``errors``, ``sharpness``, ``analysis``) have the same schema.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from legato.config_file import read_yaml_mapping, validate_model
from legato.errors import LegatoError
from legato.workflows.study_config import (
    AnalysisSection,
    ErrorsSection,
    SharpnessSection,
    TfailSection,
    deep_merge,
    resolve_path,
)
from legato.workflows.tfail import parse_sizes, replication_name

ARMS = ("allegro", "legato", "allegro_2x", "allegro_matched")
ARM_LABELS = {
    "allegro": "Allegro (Adam, same epochs)",
    "legato": "Legato (SAM)",
    "allegro_2x": "Allegro (Adam, equal compute)",
    "allegro_matched": "Allegro (Adam, accuracy-matched)",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class StartsSection(_Strict):
    """Independent starting boxes per instance (legato.workflows.starts, docs/starts.md)."""

    enabled: bool = True  # false: replicas of the base box plus noise (study v1)
    model: str = "../models/study_v2_reference.pt"  # reference potential of the healing runs
    steps: int = Field(500, ge=0)  # thermostatted steps per instance (docs/starts.md)
    timestep_fs: float = Field(1.0, gt=0)
    #: the tile pool: the last frame of every MD trajectory at these temperatures
    pool_temperatures_K: list[float] = Field(default_factory=lambda: [200.0, 250.0])
    seed: int = Field(0, ge=0)


class RhoGridSection(_Strict):
    """Table 1: extra SAM models, one per ρ and seed, at the base size (paired with the main
    arms on the same starting boxes)."""

    rhos: list[float] = Field(default_factory=list)  # besides the Legato arm's own rho
    seeds: list[int] | None = None  # default: the study's first seed

    @field_validator("rhos")
    @classmethod
    def _rhos(cls, value: list[float]) -> list[float]:
        if any(not r > 0 for r in value) or len(set(value)) != len(value):
            raise ValueError("rho_grid.rhos must be distinct positive numbers")
        return sorted(value)


class LmaxGridSection(_Strict):
    """Table 4: extra Adam models, one per l_max and seed (``epochs`` epochs, best validation
    loss, like the ``allegro`` arm), at the base size."""

    l_max: list[int] = Field(default_factory=list)  # besides the arms' own l_max
    seeds: list[int] | None = None  # default: the study's first seed

    @field_validator("l_max")
    @classmethod
    def _lmax(cls, value: list[int]) -> list[int]:
        if any(not 0 <= v <= 3 for v in value) or len(set(value)) != len(value):
            raise ValueError("lmax_grid.l_max must be distinct integers in 0..3")
        return sorted(value)


#: name prefixes of the grids' arms (Table 1, Table 4)
RHO_PREFIX, LMAX_PREFIX = "legato_rho", "allegro_lmax"


def arm_label(arm: str) -> str:
    """Label of an arm in tables and figures."""
    if arm in ARM_LABELS:
        return ARM_LABELS[arm]
    if arm.startswith(RHO_PREFIX):
        return f"Legato (SAM ρ = {arm.removeprefix(RHO_PREFIX)})"
    if arm.startswith(LMAX_PREFIX):
        return f"Allegro (Adam, l_max = {arm.removeprefix(LMAX_PREFIX)})"
    raise LegatoError(f"unknown arm {arm!r}")


def is_arm(arm: str) -> bool:
    return arm in ARMS or arm.startswith((RHO_PREFIX, LMAX_PREFIX))


class StudyV2Config(_Strict):
    """Study v2: data, seeds, arms, starting boxes, time to failure, analyses."""

    version: Literal[2]
    data: str  # labelled frames; info["split"] == "test" marks held-out frames
    data_index: str = ":"
    test_fraction: float = Field(0.1, gt=0, lt=1)  # when the frames carry no split labels
    split_seed: int = 0
    train_frames: dict[str, list[str | float]] = Field(default_factory=dict)
    #: a ``legato train`` config without run_dir and data.path (the study sets them, and the
    #: seed: training.seed and data.split_seed)
    train: dict[str, Any] = Field(default_factory=dict)
    seeds: list[int] = Field(default_factory=lambda: [1, 2, 3, 4, 5], min_length=1)
    rho: float = Field(0.005, gt=0)  # SAM ρ of the Legato arm
    epochs: int = Field(20, ge=1)  # SAM epochs; Adam runs adam_factor × epochs
    adam_factor: int = Field(2, ge=1)
    #: sizes each arm runs at (keys: arms; default: every arm at every tfail size; []: no MD)
    arm_sizes: dict[str, list[int | str]] = Field(default_factory=dict)
    rho_grid: RhoGridSection = Field(default_factory=RhoGridSection)
    lmax_grid: LmaxGridSection = Field(default_factory=LmaxGridSection)
    starts: StartsSection = Field(default_factory=StartsSection)
    tfail: TfailSection = Field(default_factory=TfailSection)
    errors: ErrorsSection = Field(default_factory=ErrorsSection)
    sharpness: SharpnessSection = Field(default_factory=SharpnessSection)
    analysis: AnalysisSection = Field(default_factory=AnalysisSection)
    workers: int = Field(2, ge=1)
    threads_per_worker: int = Field(1, ge=1)

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, value: list[int]) -> list[int]:
        if len(set(value)) != len(value) or min(value) < 0:
            raise ValueError("seeds must be distinct non-negative integers")
        return value

    @model_validator(mode="after")
    def _arm_sizes(self) -> StudyV2Config:
        sizes = parse_sizes(self.tfail.sizes)
        for arm, wanted in self.arm_sizes.items():
            if arm not in ARMS:
                raise ValueError(f"arm_sizes: unknown arm {arm!r} (arms: {', '.join(ARMS)})")
            for reps in parse_sizes(wanted) if wanted else []:  # []: the arm runs no MD
                if reps not in sizes:
                    raise ValueError(f"arm_sizes.{arm}: size {replication_name(reps)} is not in tfail.sizes")
        if self.rho in self.rho_grid.rhos:
            raise ValueError(f"rho_grid.rhos: {self.rho:g} is the Legato arm's rho (already in the grid)")
        if self.base_lmax() in self.lmax_grid.l_max:
            raise ValueError(
                f"lmax_grid.l_max: {self.base_lmax()} is the arms' own l_max (already in the grid)"
            )
        for name, grid in (("rho_grid", self.rho_grid), ("lmax_grid", self.lmax_grid)):
            if grid.seeds is not None and (not grid.seeds or not set(grid.seeds) <= set(self.seeds)):
                raise ValueError(f"{name}.seeds must be some of the study's seeds")
        return self

    def base_lmax(self) -> int:
        """The arms' l_max (the train section's, else legato train's default of 1)."""
        return int((self.train.get("model") or {}).get("l_max", 1))

    def rho_arms(self) -> dict[str, float]:
        """Table-1 arm -> its SAM ρ."""
        return {f"{RHO_PREFIX}{r:g}": r for r in self.rho_grid.rhos}

    def lmax_arms(self) -> dict[str, int]:
        """Table-4 arm -> its l_max."""
        return {f"{LMAX_PREFIX}{v}": v for v in self.lmax_grid.l_max}

    def arms(self) -> list[str]:
        """Every arm: the four of :data:`ARMS`, then the Table-1 arms by ρ, the Table-4 arms."""
        return [*ARMS, *self.rho_arms(), *self.lmax_arms()]

    def grid_seeds(self, grid: str = "rho_grid") -> list[int]:
        """Seeds of a grid's models (default: the first seed)."""
        return list(getattr(self, grid).seeds or self.seeds[:1])

    def seeds_of(self, arm: str) -> list[int]:
        if arm in ARMS:
            return list(self.seeds)
        return self.grid_seeds("rho_grid" if arm in self.rho_arms() else "lmax_grid")

    def sizes_of(self, arm: str) -> list[tuple[int, int, int]]:
        """Replications arm ``arm`` runs at (the grids' arms: the base size)."""
        if arm not in ARMS:
            return parse_sizes(self.tfail.sizes)[:1]
        wanted = self.arm_sizes.get(arm, self.tfail.sizes)
        return parse_sizes(wanted) if wanted else []


def train_config(
    cfg: StudyV2Config,
    sam: bool,
    seed: int,
    run_dir: str,
    data_path: str,
    rho: float | None = None,
    l_max: int | None = None,
) -> dict:
    """The ``legato train`` config of one run: SAM (ρ = ``rho``, default the config's, for
    ``epochs``) or Adam (``adam_factor`` × ``epochs``, every epoch's model kept so the study
    can pick the control arms; with ``l_max``, a Table-4 model: ``epochs`` epochs, best kept)."""
    grid = l_max is not None
    over: dict[str, Any] = {
        "run_dir": run_dir,
        "data": {"path": data_path, "split_seed": seed},
        "training": {
            "seed": seed,
            "progress": False,
            "num_threads": cfg.threads_per_worker,
            "max_epochs": cfg.epochs if sam or grid else cfg.adam_factor * cfg.epochs,
            "save_every_epoch_model": not (sam or grid),
        },
        "sam": {"enabled": True, "rho": cfg.rho if rho is None else rho} if sam else {"enabled": False},
        # every epoch up to the cap, so SAM and Adam see the same number of epochs
        "early_stopping": {"enabled": False},
    }
    if grid:
        over["model"] = {"l_max": l_max}
    return deep_merge(cfg.train, over)


def check_train_section(cfg: StudyV2Config) -> None:
    from legato.train.config import parse_config

    for key in ("run_dir",):
        if key in cfg.train:
            raise LegatoError(f"'{key}' is set by the study; remove it from train")
    for sam in (False, True):
        parse_config(train_config(cfg, sam, cfg.seeds[0], "<run_dir>", "<data>"), "study config (train)")


#: path settings of a study v2 config: (section or None for top level, key)
PATH_KEYS = ((None, "data"), ("starts", "model"), ("tfail", "structure"))


def with_base(raw: dict[str, Any], path: Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A config with ``base: <file>`` (relative to its own folder) takes every top-level
    section it does not set from that file, whole (a section it sets replaces the base's);
    the base's relative paths stay relative to the base's folder. Bases may chain."""
    if "base" not in raw:
        return raw
    if not isinstance(raw["base"], str):
        raise LegatoError(f"{path}: base must be the file name of another study v2 config")
    base_path = (path.resolve().parent / raw["base"]).resolve()
    if base_path in chain or base_path == path.resolve():
        raise LegatoError(f"{path}: base {raw['base']} leads back to itself")
    if not base_path.is_file():
        raise LegatoError(f"{path}: base config {raw['base']} not found (looked for {base_path})")
    base = with_base(read_yaml_mapping(base_path), base_path, (*chain, path.resolve()))
    for section, key in PATH_KEYS:  # ``base`` is a fresh mapping: edited in place
        holder = base if section is None else base.get(section)
        if isinstance(holder, dict) and isinstance(holder.get(key), str):
            holder[key] = resolve_path(holder[key], base_path.parent)
    return {**base, **{k: v for k, v in raw.items() if k != "base"}}


def load_study_v2_config(path: str | Path, data: dict | None = None) -> StudyV2Config:
    """Read (or take ``data``), apply ``base`` (:func:`with_base`), validate and resolve
    relative paths (config folder first)."""
    path = Path(path)
    raw = with_base(read_yaml_mapping(path) if data is None else data, path)
    cfg = validate_model(StudyV2Config, raw, str(path))
    check_train_section(cfg)
    base = path.resolve().parent
    cfg.data = resolve_path(cfg.data, base)
    cfg.starts.model = resolve_path(cfg.starts.model, base)
    if cfg.tfail.structure is not None:
        cfg.tfail.structure = resolve_path(cfg.tfail.structure, base)
    return cfg
