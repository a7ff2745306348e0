"""Float64 precision of the building blocks: the tensor product against e3nn, exact constants
through dtype conversions and save/load, and rotation invariance of a float64 Allegro."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import torch
from conftest import random_atoms, small_model
from e3nn import o3

import legato
from legato.data import atoms_to_graph
from legato.models import Allegro
from legato.nn import AllegroPaths, BesselBasis, ChannelwiseTP
from legato.nn.tensor_product import Irrep, irrep_slices, irrep_str, output_groups


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def _irreps(irreps: Sequence[Irrep], mul: int) -> o3.Irreps:
    return o3.Irreps("+".join(f"{mul}x{irrep_str(ir)}" for ir in irreps))


def _to_e3nn(x: torch.Tensor, irreps: Sequence[Irrep]) -> torch.Tensor:
    """legato ``[n, Σd, m]`` (channels innermost) -> e3nn ``[n, Σ m·d]`` (per irrep, channel-major)."""
    n = x.shape[0]
    return torch.cat([x[:, s, :].transpose(1, 2).reshape(n, -1) for s in irrep_slices(irreps)], dim=1)


@pytest.mark.parametrize("l_max", [1, 2])
@pytest.mark.parametrize("parity", ["o3_full", "o3_restricted", "so3"])
def test_channelwise_tp_matches_e3nn(l_max: int, parity: str) -> None:
    """Every layer's ChannelwiseTP equals e3nn's o3.TensorProduct with one "uuu" instruction per
    path, no weights, irrep_normalization="component" (factor √(2l₃+1), as legato) and
    path_normalization="none" (legato does not divide by the number of paths; that is the
    linear's job). e3nn's output has one ``m×ir₃`` block per path, in legato's path order;
    legato groups the paths of one output irrep and orders each group component-major:
    legato column ``start + c·n_p + j`` is component c of path j of the group, i.e. e3nn's
    group blocks ``[n, n_p, m, d]`` permuted to ``[n, d, n_p, m]``.
    legato's TP is built under float32 and converted, as models are; e3nn's is built in
    float64 (converting it would keep float32-rounded coefficients)."""
    mul, n = 3, 7
    paths = AllegroPaths.build(l_max, parity, 3)
    gen = torch.Generator().manual_seed(l_max)
    for k, layer in enumerate(paths.layers):
        in1, in2 = paths.inputs[k], paths.sh_irreps
        with default_dtype(torch.float32):
            tp = ChannelwiseTP(in1, in2, layer).to(torch.float64)
        with default_dtype(torch.float64):  # e3nn keeps its constants in the build dtype
            ref = o3.TensorProduct(
                _irreps(in1, mul),
                _irreps(in2, mul),
                o3.Irreps("+".join(f"{mul}x{irrep_str(p[2])}" for p in layer)),
                [
                    (list(in1).index(p[0]), list(in2).index(p[1]), j, "uuu", False)
                    for j, p in enumerate(layer)
                ],
                irrep_normalization="component",
                path_normalization="none",
            )
        v = torch.randn(n, tp.d1, mul, generator=gen, dtype=torch.float64)
        env = torch.randn(n, tp.d2, mul, generator=gen, dtype=torch.float64)
        out_e3nn = ref(_to_e3nn(v, in1), _to_e3nn(env, in2))
        expected, start = [], 0
        for ir3, n_p in output_groups(layer):
            d = 2 * ir3[0] + 1
            block = out_e3nn[:, start : start + n_p * mul * d].reshape(n, n_p, mul, d)
            expected.append(block.permute(0, 3, 1, 2).reshape(n, d * n_p, mul))
            start += n_p * mul * d
        expected_t = torch.cat(expected, dim=1)
        got = tp(v, env)
        assert got.shape == expected_t.shape
        err = (got - expected_t).abs().max().item()
        assert err <= 1e-13 * expected_t.abs().max().item(), f"layer {k}: {err:.2e}"


def _native_float64_constants(model: Allegro) -> dict[str, torch.Tensor]:
    """The nn constants of ``model`` computed by modules built directly in float64."""
    with default_dtype(torch.float64):
        bessel = BesselBasis(model.r_max, model.hparams["num_bessel"])
        tps = [
            ChannelwiseTP(model.paths.inputs[k], model.paths.sh_irreps, p)
            for k, p in enumerate(model.paths.layers)
        ]
    out = {f"bessel.{k}": v for k, v in bessel.state_dict().items()}
    out.update({f"tps.{k}.coupling_t": tp.coupling_t for k, tp in enumerate(tps)})
    return out


def _assert_constants(model: Allegro, ref: dict[str, torch.Tensor], dtype: torch.dtype) -> None:
    state = dict(model.named_parameters()) | dict(model.named_buffers())
    for name, value in ref.items():
        got = state[name].detach()
        assert got.dtype == dtype, name
        # rounded once from float64 (exact when dtype is float64)
        assert torch.equal(got, value.to(dtype)), f"{name} is not exact in {dtype}"


@pytest.mark.parametrize(
    "over", [{}, {"parity": "so3"}, {"parity": "o3_restricted", "l_max": 3}], ids=["o3_full", "so3", "o3_r3"]
)
def test_float64_allegro_rotation_invariant(over: dict) -> None:
    """Built under float32 and converted (small_model): energy invariant to 1e-13 relative,
    forces equivariant to 1e-12 eV/Å (float32-rounded couplings gave ~1e-9 eV/Å)."""
    model = small_model(torch.float64, **over)
    assert torch.get_default_dtype() == torch.float32
    for seed in range(3):
        atoms = random_atoms(16, cell=[[5.0, 0.3, 0.0], [0.4, 5.5, 0.2], [0.1, -0.3, 6.0]], seed=seed)
        torch.manual_seed(seed)
        rot = o3.rand_matrix(dtype=torch.float64)
        rotated = atoms.copy()
        rotated.positions = atoms.positions @ rot.numpy().T
        rotated.cell = atoms.cell.array @ rot.numpy().T
        out = model(atoms_to_graph(atoms, model.type_names, model.r_max, torch.float64))
        out_r = model(atoms_to_graph(rotated, model.type_names, model.r_max, torch.float64))
        e, e_r = out["energy"].detach(), out_r["energy"].detach()
        assert ((e_r - e).abs() / e.abs()).max().item() <= 1e-13
        f, f_r = out["forces"].detach(), out_r["forces"].detach()
        assert f.abs().max().item() > 1e-3  # the check below is not trivially satisfied
        assert (f_r - f @ rot.T).abs().max().item() <= 1e-12


def test_constants_exact_through_conversions() -> None:
    model = small_model(torch.float64)
    ref = _native_float64_constants(model)
    assert math.pi * 3 == ref["bessel.bessel_weights"][2].item()
    _assert_constants(model, ref, torch.float64)
    model.float()
    _assert_constants(model, ref, torch.float32)
    model.double()
    _assert_constants(model, ref, torch.float64)
    model.share_memory()
    _assert_constants(model, ref, torch.float64)
    assert model.tps[0].coupling_t.is_shared()
    with default_dtype(torch.float64):  # built directly in float64: exact too
        _assert_constants(small_model(torch.float64), ref, torch.float64)


def test_trained_and_loaded_values_win(tmp_path: Path) -> None:
    """A changed (trained) Bessel frequency converts like any parameter, and save/load keeps
    the float64 model's values, constants included, exactly."""
    model = small_model(torch.float64)
    ref = _native_float64_constants(model)
    with torch.no_grad():
        model.bessel.bessel_weights.add_(0.1)
    trained = model.bessel.bessel_weights.detach().clone()
    legato.save_model(model, tmp_path / "m.pt")
    loaded = legato.load_model(tmp_path / "m.pt")
    assert torch.equal(loaded.bessel.bessel_weights.detach(), trained)
    ref.pop("bessel.bessel_weights")
    _assert_constants(loaded, ref, torch.float64)
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    loaded.float().double()
    assert torch.equal(loaded.bessel.bessel_weights.detach(), trained.float().double())
    _assert_constants(loaded, ref, torch.float64)
