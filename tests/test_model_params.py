"""The architecture matches the paper: exact parameter counts and irreps per layer."""

import pytest

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
    with pytest.raises(ValueError, match="parity"):
        Allegro(["H"], parity="o2")
