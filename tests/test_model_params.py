"""The architecture matches the paper: exact parameter counts and irreps per layer."""

import re

import numpy as np
import pytest

from legato.errors import LegatoError
from legato.models import Allegro, count_parameters
from legato.nn.tensor_product import AllegroPaths


@pytest.mark.parametrize("l_max,expected", [(0, 95_656), (1, 133_544), (2, 183_720)])
def test_paper_parameter_counts(l_max: int, expected: int) -> None:
    model = Allegro(
        type_names=["H", "N"],
        r_max=6.0,
        l_max=l_max,
        parity="o3_full",
        num_layers=3,
        env_embed_multiplicity=32,
        two_body_latent_mlp_latent_dimensions=[32, 64, 128],
        latent_mlp_latent_dimensions=[128],
        env_embed_mlp_latent_dimensions=[],
        edge_eng_mlp_latent_dimensions=[32],
        num_bessel=8,
        polynomial_cutoff_p=7,
        latent_resnet=True,
    )
    assert count_parameters(model) == expected


def test_paper_breakdown_lmax1() -> None:
    model = Allegro(["H", "N"], l_max=1)
    count = lambda mod: sum(p.numel() for p in mod.parameters())  # noqa: E731
    assert count(model.two_body) == 10_624
    assert sum(count(m) for m in model.latents[:-1]) == 49_152
    assert count(model.latents[-1]) == 24_576
    assert count(model.env_embed) == 32_768
    assert count(model.linears) == 12_288
    assert count(model.edge_energy) == 4_128
    assert count(model.bessel) == 8


def test_irreps_lmax1() -> None:
    paths = AllegroPaths.build(1, "o3_full", 3)
    assert paths.describe() == "0e+1o → 0e+1e+1o → 0e+1o → 0e (5, 5, 2 paths)"
    assert [paths.n_scalars(k) for k in range(3)] == [2, 2, 2]


@pytest.mark.parametrize("parity", ["o3_restricted", "so3"])
def test_other_parities_end_in_scalars(parity: str) -> None:
    paths = AllegroPaths.build(2, parity, 3)
    assert paths.outputs[-1] == ((0, 1),)
    if parity == "o3_restricted":
        assert all(p == (-1) ** l for out in paths.outputs for l, p in out)
    else:
        assert all(p == 1 for out in paths.outputs for _, p in out)


def test_bad_parity() -> None:
    with pytest.raises(LegatoError, match="invalid value for 'parity'"):
        Allegro(["H"], parity="o2")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"r_max": -1.0}, "'r_max': Input should be greater than 0"),
        ({"r_max": "six"}, "'r_max': Input should be a valid number"),
        ({"r_max": float("nan")}, "'r_max': Input should be a finite number"),
        ({"r_max": float("inf")}, "'r_max': Input should be a finite number"),
        ({"num_bessel": 0}, "'num_bessel': Input should be greater than or equal to 1"),
        ({"avg_num_neighbors": 0.0}, "'avg_num_neighbors': Input should be greater than 0"),
        ({"avg_num_neighbors": -3.0}, "'avg_num_neighbors': Input should be greater than 0"),
        ({"num_layers": 1.7}, "'num_layers': Input should be a valid integer"),
        ({"num_layers": 2.0}, "'num_layers': Input should be a valid integer"),
        ({"l_max": "one"}, "'l_max': Input should be a valid integer"),
        ({"type_names": ["H", "H"]}, "'type_names': type names must be unique"),
        ({"per_species_energy_shift": [1.0, 2.0, 3.0]}, "expected 2 values"),
        ({"latent_mlp_latent_dimensions": [7]}, "must equal the last two-body dimension"),
    ],
)
def test_bad_hyperparameters_name_their_key(kwargs, message) -> None:
    args = {"type_names": ["H", "N"], **kwargs}
    with pytest.raises(LegatoError, match=re.escape(message)) as exc:
        Allegro(**args)
    assert str(exc.value).startswith("Allegro: invalid value for '") and "\n" not in str(exc.value)


def test_numpy_and_tuple_arguments_still_accepted() -> None:
    model = Allegro(
        ("H", "N"),
        per_species_energy_shift=np.array([-1.0, -2.0]),
        two_body_latent_mlp_latent_dimensions=(4, 8),
        latent_mlp_latent_dimensions=(8,),
        num_layers=1,
        env_embed_multiplicity=2,
    )
    assert model.hparams["per_species_energy_shift"] == [-1.0, -2.0]
    assert model.hparams["two_body_latent_mlp_latent_dimensions"] == [4, 8]


def test_build_model_unknown_key_and_empty_graph_statistics() -> None:
    from types import SimpleNamespace

    from legato.models import build_model

    with pytest.raises(LegatoError, match="unknown key 'r_mx' \\(did you mean 'r_max'\\?\\)"):
        build_model({"type_names": ["H"], "r_mx": 3.0})
    stats = SimpleNamespace(avg_num_neighbors=0.0, energy_shifts=[0.0], force_rms=1.0)
    with pytest.raises(LegatoError, match="no atom pairs within r_max"):
        build_model({"type_names": ["H"]}, stats)
