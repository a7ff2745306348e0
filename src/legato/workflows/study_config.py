"""Schema of the robustness study (``legato study CONFIG.yaml``), validated with pydantic.

Unknown keys are errors naming the nearest valid key. The ``train`` section is a
``legato train`` config without ``run_dir`` and ``data.path`` (the study fills them);
``allegro`` and ``legato`` are deep-merged over it for the two kinds of model. See
docs/study.md for every key.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from legato.config_file import read_yaml_mapping, validate_model
from legato.errors import LegatoError
from legato.workflows.protocol import TfailProtocol
from legato.workflows.tfail import parse_sizes


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TfailSection(TfailProtocol):
    """The time-to-failure protocol (every :class:`TfailProtocol` field, with its limits and
    defaults) and the ensemble: base box, sizes, instances, seeds, per-size budgets."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=False)

    structure: str | None = None  # base box; default: a test-split MD frame near T
    structure_index: int = 0
    sizes: list[int | str] = Field(default_factory=lambda: [1, "1x1x2", 2, 3])
    instances: int = Field(10, ge=1)
    seed: int = Field(0, ge=0)
    #: per-size production budgets (key: a size as in ``sizes``) bounding the cost of large
    #: sizes; sizes not listed use ``max_steps``. Censoring times may differ between sizes.
    max_steps_by_size: dict[str, int] = Field(default_factory=dict)
    #: per-size instance counts (key: a size as in ``sizes``); sizes not listed use
    #: ``instances``. Every model runs the same instances (seeds ``seed``, ``seed+1``, ...).
    instances_by_size: dict[str, int] = Field(default_factory=dict)
    checkpoint_every: int = Field(500, ge=0)

    @field_validator("sizes")
    @classmethod
    def _sizes(cls, value: list[int | str]) -> list[int | str]:
        try:
            parse_sizes(value)
        except LegatoError as exc:
            raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _budgets(self) -> TfailSection:
        sizes = parse_sizes(self.sizes)
        for name, table in (
            ("max_steps_by_size", self.max_steps_by_size),
            ("instances_by_size", self.instances_by_size),
        ):
            for key, count in table.items():
                try:
                    reps = parse_sizes([key])[0]
                except LegatoError as exc:
                    raise ValueError(f"{name}: {exc}") from None
                if reps not in sizes:
                    raise ValueError(f"{name}: size {key!r} is not in sizes")
                if count < 1:
                    raise ValueError(f"{name}: the value of {key!r} must be >= 1")
        return self

    def instances_of(self, reps: tuple[int, int, int]) -> int:
        """Instances of one size."""
        for key, n in self.instances_by_size.items():
            if parse_sizes([key])[0] == tuple(reps):
                return int(n)
        return self.instances

    def budget(self, reps: tuple[int, int, int]) -> int:
        """Production step budget of one size."""
        for key, steps in self.max_steps_by_size.items():
            if parse_sizes([key])[0] == tuple(reps):
                return int(steps)
        return self.max_steps

    def protocol(self, reps: tuple[int, int, int] | None = None) -> TfailProtocol:
        """The MD protocol (of one size, whose production budget may differ)."""
        values = {name: getattr(self, name) for name in TfailProtocol.model_fields}
        if reps is not None:
            values["max_steps"] = self.budget(reps)
        return TfailProtocol(**values)


class ErrorsSection(_Strict):
    """Energy and force errors on the held-out test frames (paper §4.3)."""

    enabled: bool = True
    max_frames: int | None = Field(None, ge=1)
    batch_size: int = Field(4, ge=1)
    n_boot: int = Field(1000, ge=10)


class SharpnessSection(_Strict):
    """Sharpness around each model (paper Table 4), legato.train.sharpness."""

    enabled: bool = True
    rho: float = Field(0.05, gt=0)
    samples: int = Field(100, ge=1)
    stat: Literal["max", "mean"] = "max"
    dist: Literal["ball", "gaussian"] = "ball"
    max_frames: int = Field(16, ge=1)
    seed: int = 0
    all_models: bool = False  # also every model of the rho grid
    #: projected-gradient-ascent steps of the worst-case sharpness (paper Eq. 2) computed
    #: beside the random-direction estimate; 0: random directions only
    pga_steps: int = Field(0, ge=0)


class LandscapeSection(_Strict):
    """1-D loss surface along one random direction (paper Fig. 5)."""

    enabled: bool = True
    points: int = Field(21, ge=3)
    t_max: float = Field(1.0, gt=0)
    normalize: Literal["global", "filter", "none"] = "filter"
    scale: float = Field(1.0, gt=0)
    max_frames: int = Field(16, ge=1)
    seed: int = 0


class AnalysisSection(_Strict):
    """Scaling fits (legato.stats.scaling) and figure choices."""

    n_boot: int = Field(2000, ge=10)
    confidence: float = Field(0.95, gt=0, lt=1)
    seed: int = 0
    weibull_ci: Literal["profile", "bootstrap"] = "profile"
    fig1_instances: int = Field(3, ge=1)  # runs per model drawn in Fig. 1 (largest size)


class StudyConfig(_Strict):
    """The whole study: data, two kinds of model, the rho grid, tfail, analyses."""

    data: str  # labelled frames (extxyz[.gz]); info["split"] == "test" marks test frames
    data_index: str = ":"
    test_fraction: float = Field(0.1, gt=0, lt=1)  # when the frames carry no split labels
    split_seed: int = 0
    #: keep only training/validation frames whose info[key] is one of the values, e.g.
    #: {source: [md], temperature_K: [200, 250]}; test frames are not filtered
    train_frames: dict[str, list[str | float]] = Field(default_factory=dict)
    train: dict[str, Any] = Field(default_factory=dict)
    allegro: dict[str, Any] = Field(default_factory=dict)
    legato: dict[str, Any] = Field(default_factory=dict)
    rho_grid: list[float] = Field(default_factory=lambda: [0.001, 0.0025, 0.005, 0.01])
    legato_rho: float | None = Field(None, gt=0)  # None: the best rho of the grid
    tfail: TfailSection = Field(default_factory=TfailSection)
    errors: ErrorsSection = Field(default_factory=ErrorsSection)
    sharpness: SharpnessSection = Field(default_factory=SharpnessSection)
    landscape: LandscapeSection = Field(default_factory=LandscapeSection)
    analysis: AnalysisSection = Field(default_factory=AnalysisSection)
    workers: int = Field(2, ge=1)  # parallel processes (training and MD jobs)
    #: torch threads of each worker; unset: the free cores shared among the workers
    threads_per_worker: int = Field(1, ge=1)

    @field_validator("rho_grid")
    @classmethod
    def _grid(cls, value: list[float]) -> list[float]:
        if any(not r > 0 for r in value) or len(set(value)) != len(value):
            raise ValueError("rho_grid values must be positive and distinct")
        return [float(r) for r in value]

    @model_validator(mode="after")
    def _legato(self) -> StudyConfig:
        if not self.rho_grid and self.legato_rho is None:
            raise ValueError("give rho_grid values or legato_rho (the Legato model's SAM rho)")
        return self


# ---------------------------------------------------------------------- training configs
def deep_merge(base: dict, over: dict) -> dict:
    """``over`` merged into a copy of ``base`` (nested dicts merged, other values replaced)."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def train_config(
    cfg: StudyConfig, rho: float | None, run_dir: str, data_path: str, threads: int | None = None
) -> dict:
    """The ``legato train`` config of one model: Allegro (Adam) if ``rho`` is None, else
    Legato (SAM with that rho)."""
    if rho is None:
        d = deep_merge(cfg.train, cfg.allegro)
        d = deep_merge(d, {"sam": {"enabled": False}})
    else:
        d = deep_merge(cfg.train, cfg.legato)
        d = deep_merge(d, {"sam": {"enabled": True, "rho": float(rho)}})
    d = deep_merge(d, {"run_dir": run_dir, "data": {"path": data_path}, "training": {"progress": False}})
    if threads is not None:
        d["training"]["num_threads"] = threads
    return d


def check_train_sections(cfg: StudyConfig) -> None:
    """Validate the Allegro and Legato training configs the study will build."""
    from legato.train.config import parse_config

    for name, rho in (("allegro", None), ("legato", 0.005)):
        for key in ("run_dir",):
            if key in cfg.train or key in getattr(cfg, name):
                raise LegatoError(f"'{key}' is set by the study; remove it from train/{name}")
        parse_config(train_config(cfg, rho, "<run_dir>", "<data>"), f"study config ({name})")


# ---------------------------------------------------------------------- loading
def validate_study_config(data: Any, source: str = "study config") -> StudyConfig:
    """Validate a study config dict; every problem is one LegatoError line."""
    cfg = validate_model(StudyConfig, data, source)
    check_train_sections(cfg)
    return cfg


def resolve_path(path: str, base: Path) -> str:
    """A path of the config: relative to the config's folder, or to the current directory
    if it exists only there."""
    p = Path(path).expanduser()
    if p.is_absolute():
        return str(p)
    if not (base / p).exists() and p.exists():
        return str(p.resolve())
    return str((base / p).resolve())


def load_study_config(path: str | Path, workers: int | None = None) -> StudyConfig:
    """Read, resolve relative paths (config folder first, then cwd) and validate;
    ``workers`` (a command-line override) replaces the config's process count."""
    path = Path(path)
    cfg = validate_study_config(read_yaml_mapping(path), str(path))
    if workers is not None:
        if workers < 1:
            raise LegatoError("--workers must be >= 1")
        cfg.workers = workers
    base = path.resolve().parent
    cfg.data = resolve_path(cfg.data, base)
    if cfg.tfail.structure is not None:
        cfg.tfail.structure = resolve_path(cfg.tfail.structure, base)
    return cfg


def set_worker_threads(cfg: StudyConfig, threads: int | None) -> str | None:
    """Set ``cfg.threads_per_worker``: ``threads`` (the --threads option) if given, else the
    config's value if it sets one, else the free cores shared among the workers (at least 1).

    Returns a warning when workers × threads exceed the available cores, else None."""
    from legato.perf import available_cores, default_threads

    if threads is not None:
        if threads < 1:
            raise LegatoError(f"--threads must be >= 1, got {threads}")
        cfg.threads_per_worker = threads
    elif "threads_per_worker" not in cfg.model_fields_set:
        cfg.threads_per_worker = max(1, default_threads() // cfg.workers)
    cores = available_cores()
    if cfg.workers * cfg.threads_per_worker > cores:
        return (
            f"note: {cfg.workers} worker(s) x {cfg.threads_per_worker} thread(s) exceed the {cores} "
            "available core(s); runs will be slower than with fewer threads (--threads)"
        )
    return None


def dump_study_config(cfg: StudyConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
