"""Training configuration: a validated YAML schema whose defaults are the paper's Table 5.

Every section rejects unknown keys with a one-line :class:`LegatoError` that names the
nearest valid key. The ``model:`` section holds keyword arguments of
:class:`legato.models.Allegro` (checked against its signature) and goes to
:func:`legato.models.build_model`; ν̄, energy shifts and scale come from the training data
unless given. See docs/training.md for every key.
"""

from __future__ import annotations

import difflib
import inspect
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from legato.config_file import read_yaml_mapping, validate_model
from legato.errors import LegatoError
from legato.models.config import DATA_DERIVED, check_hparams

#: model kwargs filled from the training data (build_model) unless set explicitly
STATS_KEYS = DATA_DERIVED


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Section):
    """Where the labelled frames are and how they are split into train / validation."""

    # any ASE-readable file (extxyz[.gz], traj, db, ...), or a list of them read in order
    path: str | list[str]
    index: str = ":"  # ASE index string selecting frames
    # an integer is a count, a decimal number a fraction; default 0.9 / 0.1 of all frames
    # (paper: 4,500 / 500), or, with split_key, all frames of that split
    n_train: int | float | None = Field(None, gt=0)
    n_val: int | float | None = Field(None, ge=0)
    split_seed: int | None = None  # default: training.seed
    # frame info key holding "train" / "validation" (or "val") labels, e.g. "split" in the
    # shipped ND3 data; frames labelled otherwise (e.g. "test") are not used
    split_key: str | None = None


class LossConfig(_Section):
    """Per-atom energy MSE + force MSE (+ stress MSE); Table 5 coefficients (1, 1)."""

    energy: float = Field(1.0, ge=0)
    forces: float = Field(1.0, ge=0)
    stress: float = Field(0.0, ge=0)
    normalize: bool = True  # divide errors by the training force RMS (model units)


class OptimizerConfig(_Section):
    """Base optimiser: any class in torch.optim by name (Table 5: Adam, lr 2e-3)."""

    name: str = "Adam"
    lr: float = Field(2e-3, gt=0)
    betas: tuple[float, float] = (0.9, 0.999)  # used if the optimiser takes it
    eps: float = 1e-8  # used if the optimiser takes it
    amsgrad: bool = False  # Adam / AdamW only
    weight_decay: float = 0.0
    kwargs: dict[str, Any] = Field(default_factory=dict)  # any further constructor args


class SAMConfig(_Section):
    """Sharpness-aware minimisation around the base optimiser (Allegro-Legato)."""

    enabled: bool = False
    rho: float = Field(0.005, ge=0)  # the paper's best ρ (Table 1)
    adaptive: bool = False  # ASAM
    eta: float = Field(0.0, ge=0)  # ASAM offset: T = |w| + eta


class SchedulerConfig(_Section):
    """ReduceLROnPlateau on the validation loss (Table 5: patience 50, factor 0.5)."""

    name: Literal["ReduceLROnPlateau", "none"] = "ReduceLROnPlateau"
    patience: int = Field(50, ge=0)
    factor: float = Field(0.5, gt=0, lt=1)
    threshold: float = Field(1e-4, ge=0)
    threshold_mode: Literal["rel", "abs"] = "rel"
    cooldown: int = Field(0, ge=0)
    min_lr: float = Field(0.0, ge=0)


class EMAConfig(_Section):
    """EMA of the weights, used for validation and the saved model."""

    enabled: bool = True
    decay: float = Field(0.99, ge=0, le=1)
    use_num_updates: bool = True  # warm-up: decay = min(decay, (1+n)/(10+n))


class EarlyStoppingConfig(_Section):
    """Stop when the validation loss has not fallen by more than ``delta`` below its best
    for ``patience`` epochs, or when the learning rate drops below ``min_lr``."""

    enabled: bool = True
    patience: int = Field(100, ge=1)
    delta: float = Field(3e-3, ge=0)  # absolute, in loss units (public configs: 5e-3)
    min_lr: float = Field(1e-5, ge=0)


class TrainingConfig(_Section):
    """Epochs, batches, budget, precision, seeds."""

    max_epochs: int = Field(100000, ge=1)
    batch_size: int = Field(4, ge=1)
    val_batch_size: int = Field(4, ge=1)
    max_time_minutes: float | None = Field(None, gt=0)  # wall-time budget over all resumes
    grad_clip_norm: float | None = Field(None, gt=0)
    dtype: Literal["float32", "float64"] = "float32"
    seed: int = 123
    num_threads: int | None = Field(None, ge=1)  # torch threads; default: torch's choice
    deterministic: bool = False  # torch.use_deterministic_algorithms
    shuffle: bool = True
    progress: bool = True  # tqdm bars
    save_every_epoch_model: bool = False  # also keep model_epoch_XXXX.pt files
    #: a saved legato model to start from (fine-tuning): its weights and its data-derived
    #: constants (ν̄, per-species shifts and scales); the model section must describe the
    #: same architecture
    init_from: str | None = None


class TrainConfig(_Section):
    """The whole ``legato train`` YAML file."""

    run_dir: str  # output folder; must not hold a previous run (use --resume)
    data: DataConfig
    model: dict[str, Any] = Field(default_factory=dict)  # kwargs of legato.models.Allegro
    loss: LossConfig = Field(default_factory=LossConfig)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    sam: SAMConfig = Field(default_factory=SAMConfig)
    lr_scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    ema: EMAConfig = Field(default_factory=EMAConfig)
    early_stopping: EarlyStoppingConfig = Field(default_factory=EarlyStoppingConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)

    @field_validator("model")
    @classmethod
    def _check_model(cls, value: dict[str, Any]) -> dict[str, Any]:
        return check_model_section(value)


# ---------------------------------------------------------------------- checks
def _nearest(key: str, valid: list[str]) -> str:
    match = difflib.get_close_matches(key, valid, n=1, cutoff=0.0)
    return f" (did you mean '{match[0]}'?)" if match else ""


def _section_class(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation) if get_origin(annotation) is not None else ():
        found = _section_class(arg)
        if found is not None:
            return found
    return None


def check_keys(data: Any, cls: type[BaseModel] = TrainConfig, where: str = "") -> None:
    """Raise LegatoError on the first unknown key, naming the nearest valid one."""
    if not isinstance(data, dict):
        return
    valid = list(cls.model_fields)
    for key, value in data.items():
        name = f"{where}{key}"
        if key not in cls.model_fields:
            raise LegatoError(f"unknown config key '{name}'{_nearest(str(key), valid)}")
        sub = _section_class(cls.model_fields[key].annotation)
        if sub is not None:
            if value is not None and not isinstance(value, dict):
                raise LegatoError(f"config section '{name}' must be a mapping")
            check_keys(value, sub, f"{name}.")


def model_parameters() -> dict[str, inspect.Parameter]:
    """Constructor arguments of the Allegro model (name → inspect.Parameter)."""
    from legato.models import Allegro

    params = dict(inspect.signature(Allegro.__init__).parameters)
    params.pop("self", None)
    return params


def check_model_section(model: dict[str, Any], source: str = "config") -> dict[str, Any]:
    """Validate the ``model:`` section: known keys (Allegro's arguments), strict values."""
    if not isinstance(model, dict):
        raise LegatoError(f"{source}: config section 'model' must be a mapping")
    valid = model_parameters()
    for key in model:
        if key not in valid:
            raise LegatoError(f"unknown config key 'model.{key}'{_nearest(str(key), list(valid))}")
    check_hparams(model, source, prefix="model.", complete=False)
    return dict(model)


def resolved_model_section(model: dict[str, Any]) -> dict[str, Any]:
    """The model section with every constructor default written out (except the values
    derived from the data, which the saved model records)."""
    out: dict[str, Any] = {}
    for name, p in model_parameters().items():
        if name in model:
            out[name] = model[name]
        elif name not in STATS_KEYS and p.default is not inspect.Parameter.empty:
            d = p.default
            out[name] = list(d) if isinstance(d, tuple) else d
    return out


# ---------------------------------------------------------------------- loading
def parse_config(data: Any, source: str = "config") -> TrainConfig:
    """Validate a config dict; every problem becomes a one-line LegatoError."""
    if not isinstance(data, dict):
        raise LegatoError(f"{source}: top level must be a mapping of sections")
    check_keys(data)
    if data.get("model") is not None:
        check_model_section(data["model"], source)
    return validate_model(TrainConfig, data, source)


def load_config(path: str | Path) -> TrainConfig:
    """Read and validate a YAML training config."""
    return parse_config(read_yaml_mapping(path), str(path))


def apply_training_overrides(
    cfg: TrainConfig, values: dict[str, Any], names: dict[str, str] | None = None
) -> bool:
    """Set ``training.<key>`` for every non-None value; a rejected value is one LegatoError
    line naming the key (or its name in ``names``, e.g. a command-line option).
    Returns whether anything was set."""
    changed = False
    for key, value in values.items():
        if value is None:
            continue
        try:
            setattr(cfg.training, key, value)
        except ValidationError as exc:
            err = exc.errors()[0]
            name = (names or {}).get(key, f"training.{key}")
            msg = err["msg"].removeprefix("Value error, ")
            raise LegatoError(f"invalid value for {name}: {msg} (got {value!r})") from None
        changed = True
    return changed


def dump_config(cfg: TrainConfig) -> str:
    """YAML text of a config with every default written out."""
    data = cfg.model_dump(mode="json")
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None)


def split_counts(n_pool: int, value: int | float | None, default: float, what: str) -> int:
    """Frames to draw from a pool of ``n_pool``: an integer is a count, a decimal number a
    fraction of the pool (≤ 1); ``None`` takes ``default`` (a fraction)."""
    x = default if value is None else value
    if isinstance(x, float):
        if x > 1:
            raise LegatoError(f"data.{what} = {x}: a fraction must be <= 1 (or give a count)")
        return int(round(x * n_pool))
    if x > n_pool:
        raise LegatoError(f"data.{what} = {x} exceeds the {n_pool} frames available")
    return int(x)
