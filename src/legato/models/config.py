"""Validation of the Allegro hyperparameters: one schema for the constructor and for the
``model:`` section of a training config, so that a bad value is one
:class:`~legato.errors.LegatoError` line naming its key (never a silent ``int(1.7)``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, field_validator

from legato.config_file import validate_model

#: constructor arguments filled from the training data when a config leaves them out
DATA_DERIVED = ("avg_num_neighbors", "per_species_energy_shift", "per_species_energy_scale")

StrictInt = Annotated[int, Strict()]
#: a finite number (an int is accepted; text, booleans, NaN and inf are not)
Number = Annotated[float, Strict(), Field(allow_inf_nan=False)]
Dims = list[Annotated[int, Strict(), Field(ge=1)]]


class AllegroHParams(BaseModel):
    """The keyword arguments of :class:`legato.models.Allegro` with their allowed values.

    ``type_names`` and the three values derived from the training data
    (``avg_num_neighbors``, ``per_species_energy_shift``, ``per_species_energy_scale``) may
    be absent in a training config; the constructor requires ``type_names``.
    """

    model_config = ConfigDict(extra="forbid")

    type_names: list[Annotated[str, Strict()]] | None = Field(None, min_length=1)
    r_max: Number = Field(6.0, gt=0)
    l_max: StrictInt = Field(1, ge=0)
    parity: Literal["o3_full", "o3_restricted", "so3"] = "o3_full"
    num_layers: StrictInt = Field(3, ge=1)
    env_embed_multiplicity: StrictInt = Field(32, ge=1)
    two_body_latent_mlp_latent_dimensions: Dims = Field(default_factory=lambda: [32, 64, 128], min_length=1)
    latent_mlp_latent_dimensions: Dims = Field(default_factory=lambda: [128], min_length=1)
    env_embed_mlp_latent_dimensions: Dims = Field(default_factory=list)
    edge_eng_mlp_latent_dimensions: Dims = Field(default_factory=lambda: [32])
    num_bessel: StrictInt = Field(8, ge=1)
    polynomial_cutoff_p: Number = Field(7.0, gt=0)
    latent_resnet: Annotated[bool, Strict()] = True
    avg_num_neighbors: Number | None = Field(None, gt=0)
    per_species_energy_shift: Number | list[Number] | None = None
    per_species_energy_scale: Number | list[Number] | None = None
    max_edges_per_chunk: StrictInt = 8192

    @field_validator("type_names")
    @classmethod
    def _unique(cls, names: list[str] | None) -> list[str] | None:
        if names is not None and len(set(names)) != len(names):
            raise ValueError(f"type names must be unique, got {names}")
        return names

    @field_validator("latent_mlp_latent_dimensions")
    @classmethod
    def _latent_out(cls, dims: list[int], info: Any) -> list[int]:
        two_body = info.data.get("two_body_latent_mlp_latent_dimensions")
        if two_body and dims[-1] != two_body[-1]:
            raise ValueError(
                f"the last latent dimension ({dims[-1]}) must equal the last two-body dimension "
                f"({two_body[-1]})"
            )
        return dims


def check_hparams(
    values: dict[str, Any], source: str = "Allegro", prefix: str = "", complete: bool = True
) -> None:
    """Raise one LegatoError line for the first invalid hyperparameter in ``values``.

    ``prefix`` (e.g. ``"model."``) is put before the key in the message. ``complete``: the
    values a model is built from (type names and the data-derived values must be given).
    """
    from legato.errors import LegatoError

    if complete:
        for key in ("type_names", *DATA_DERIVED):
            if values.get(key, 0) is None:
                raise LegatoError(f"{source}: invalid value for '{prefix}{key}': a value is required")
    if prefix:
        key = prefix.rstrip(".")
        wrapper = _wrapper(key)
        validate_model(wrapper, {key: values}, source)
    else:
        validate_model(AllegroHParams, values, source)
    n = len(values.get("type_names") or [])
    for key in ("per_species_energy_shift", "per_species_energy_scale"):
        v = values.get(key)
        if n and isinstance(v, list) and len(v) != n:
            raise LegatoError(
                f"{source}: invalid value for '{prefix}{key}': expected {n} values (one per type "
                f"name), got {len(v)}"
            )


_WRAPPERS: dict[str, type[BaseModel]] = {}


def _wrapper(key: str) -> type[BaseModel]:
    """A model with the single field ``key: AllegroHParams`` (so that errors read 'key.r_max')."""
    if key not in _WRAPPERS:
        from pydantic import create_model

        _WRAPPERS[key] = create_model(
            f"_{key.title()}Section", __config__=ConfigDict(extra="forbid"), **{key: (AllegroHParams, ...)}
        )
    return _WRAPPERS[key]
