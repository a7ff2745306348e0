"""Shared fixtures: small random systems and small models."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms

# The suite exercises the eager reference path by default (compiling costs tens of seconds
# per model shape on a cold cache); tests/test_fast.py runs the compiled path explicitly.
os.environ.setdefault("LEGATO_COMPILE", "0")

SHARED_BOX = Path(__file__).resolve().parents[2] / "shared" / "data" / "nh3_432.lmp"


def random_atoms(
    n: int = 12,
    cell: np.ndarray | None = None,
    pbc: bool = True,
    seed: int = 0,
    min_dist: float = 0.9,
    symbols: tuple[str, ...] = ("H", "N"),
) -> Atoms:
    """Random atoms with no pair closer than ``min_dist`` (minimum image when periodic)."""
    rng = np.random.default_rng(seed)
    cell = np.diag([5.0, 5.5, 6.0]) if cell is None else np.asarray(cell, float)
    pos: list[np.ndarray] = []
    inv = np.linalg.inv(cell)
    while len(pos) < n:
        p = rng.random(3) @ cell
        ok = True
        for q in pos:
            d = p - q
            if pbc:
                f = d @ inv
                d = (f - np.round(f)) @ cell
            if np.linalg.norm(d) < min_dist:
                ok = False
                break
        if ok:
            pos.append(p)
    sym = [symbols[k % len(symbols)] for k in range(n)]
    return Atoms(sym, positions=np.array(pos), cell=cell, pbc=pbc)


def small_hparams(**over) -> dict:
    hp = dict(
        type_names=["H", "N"],
        r_max=3.5,
        l_max=2,
        num_layers=2,
        env_embed_multiplicity=4,
        two_body_latent_mlp_latent_dimensions=[8, 16],
        latent_mlp_latent_dimensions=[16],
        edge_eng_mlp_latent_dimensions=[8],
        avg_num_neighbors=10.0,
        per_species_energy_shift=[-1.5, -3.0],
        per_species_energy_scale=[0.7, 1.3],
    )
    hp.update(over)
    return hp


def small_model(dtype: torch.dtype = torch.float64, seed: int = 0, **over):
    from legato.models import Allegro

    torch.manual_seed(seed)
    model = Allegro(**small_hparams(**over)).to(dtype).eval()
    # random (non-zero) Bessel frequencies and residual mixing make the tests sharper
    return model


@pytest.fixture(params=[torch.float32, torch.float64], ids=["float32", "float64"])
def dtype(request) -> torch.dtype:
    return request.param


@pytest.fixture
def shared_box() -> Path:
    if not SHARED_BOX.exists():
        pytest.skip("../shared/data/nh3_432.lmp not available")
    return SHARED_BOX


@pytest.fixture
def readonly_dir(tmp_path):
    """A folder no file can be created in, also when the tests run as root."""
    import os

    if os.geteuid() != 0:
        ro = tmp_path / "readonly"
        ro.mkdir()
        ro.chmod(0o500)
        yield ro
        ro.chmod(0o700)
        return
    probe = Path("/sys")
    if os.access(probe, os.W_OK) and probe.is_dir():
        try:
            (probe / ".legato-probe").mkdir()
        except OSError:
            yield probe
            return
        (probe / ".legato-probe").rmdir()
    pytest.skip("no read-only folder available")
