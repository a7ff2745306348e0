"""Worst-case sharpness by projected gradient ascent (``worst_case_sharpness``): the exact
trust-region maximum of a quadratic loss, the random-direction estimate below it on a tiny
Allegro, the ball constraint, exact restoration of the weights, float32 and float64, and
``legato sharpness --method`` through the installed script."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import ase.io
import numpy as np
import pytest
import torch
from train_utils import SMALL_MODEL, make_emt_dataset

from legato.cli.main import main
from legato.data import keys as K
from legato.errors import LegatoError
from legato.train.evaluation import dataset_loss, model_batches
from legato.train.loss import LossSpec
from legato.train.sharpness import loss_and_gradient, sharpness, worst_case_sharpness

N_ATOMS, DIM = 20, 40  # 60 force components, 40 parameters


class LinearForces(torch.nn.Module):
    """F = A θ (no energy): with force labels the loss is an exact quadratic in θ."""

    type_names = ["X"]

    def __init__(self, a: torch.Tensor, theta: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("a", a)  # [3 n_atoms, DIM]
        self.theta = torch.nn.Parameter(theta.clone())  # [DIM]
        self.theta0 = theta.clone()
        self.displacements: list[float] = []  # ‖θ − θ₀‖ at every call

    def forward(self, g: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        self.displacements.append(float((self.theta.detach() - self.theta0).norm()))
        return {K.FORCES: (self.a @ self.theta).reshape(-1, 3)}


def quadratic_problem(dtype: torch.dtype, zero_gradient: bool, seed: int = 0):
    """Model, one batch, and (g, H) with L(θ₀ + ε) − L(θ₀) = g·ε + ½ εᵀHε exactly."""
    rng = np.random.default_rng(seed)
    u, _ = np.linalg.qr(rng.normal(size=(3 * N_ATOMS, DIM)))
    v, _ = np.linalg.qr(rng.normal(size=(DIM, DIM)))
    s = np.concatenate([[3.0, 1.2], np.linspace(1.0, 0.1, DIM - 2)])  # one dominant direction
    a = (u * s) @ v.T  # [60, 40]
    theta = rng.normal(size=DIM)
    target = a @ theta + (0.0 if zero_gradient else 0.05 * rng.normal(size=3 * N_ATOMS))
    batch = {
        K.SPECIES: torch.zeros(N_ATOMS, dtype=torch.long),
        K.BATCH: torch.zeros(N_ATOMS, dtype=torch.long),
        K.NUM_ATOMS: torch.tensor([N_ATOMS]),
        K.FORCES: torch.tensor(target.reshape(-1, 3), dtype=dtype),
    }
    model = LinearForces(torch.tensor(a, dtype=dtype), torch.tensor(theta, dtype=dtype))
    n_f = 3 * N_ATOMS
    grad = 2.0 * a.T @ (a @ theta - target) / n_f
    hess = 2.0 * a.T @ a / n_f
    return model, [batch], grad, hess


def trust_region_max(g: np.ndarray, h: np.ndarray, rho: float) -> float:
    """max over ‖ε‖ ≤ ρ of g·ε + ½ εᵀHε for H ⪰ 0: ε = (μ − H)⁻¹ g on the sphere, μ > λ_max."""
    lam, q = np.linalg.eigh(h)
    gq = q.T @ g
    if np.linalg.norm(g) == 0:
        return 0.5 * rho**2 * lam[-1]
    lo, hi = lam[-1] + 1e-15, lam[-1] + np.linalg.norm(g) / rho + 1.0
    for _ in range(200):  # ‖ε(μ)‖ decreases in μ
        mu = 0.5 * (lo + hi)
        lo, hi = (mu, hi) if np.linalg.norm(gq / (mu - lam)) > rho else (lo, mu)
    eps = gq / (hi - lam)
    return float(gq @ eps + 0.5 * (lam * eps**2).sum())


@pytest.mark.parametrize("zero_gradient", [True, False], ids=["minimum", "slope"])
def test_quadratic_reaches_the_trust_region_maximum(dtype, zero_gradient):
    rho = 0.05
    model, batches, g, h = quadratic_problem(dtype, zero_gradient)
    spec = LossSpec(scale=1.0)
    exact = trust_region_max(g, h, rho)
    if zero_gradient:  # at a minimum the worst case is ρ²λ_max/2
        assert exact == pytest.approx(0.5 * rho**2 * np.linalg.eigvalsh(h)[-1])
    before = model.theta.detach().clone()
    res = worst_case_sharpness(model, batches, spec, rho, steps=20, step_fraction=0.5, progress=False)
    rel = 1e-9 if dtype == torch.float64 else 1e-4
    assert 0.99 * exact < res.value <= exact * (1 + rel) + (0 if dtype == torch.float64 else 1e-9)
    assert res.grad_norm == pytest.approx(np.linalg.norm(g), rel=1e-4, abs=1e-6)
    # every iterate in the ball, the SAM point (or the random start) on its sphere
    norms = np.array([t["eps_norm"] for t in res.trace])
    assert norms.max() <= rho * (1 + 1e-6) and norms[0] == pytest.approx(rho, rel=1e-6)
    # the weights actually seen: float32 rounds w + ε to the weights' own precision (~1e-7 |w|)
    shift = rho * (1e-6 if dtype == torch.float64 else 1e-5)
    assert len(model.displacements) == 22 and max(model.displacements) <= rho + shift
    assert len(res.trace) == 21 and res.value == max(t["value"] for t in res.trace)
    assert res.n_gradients == 21
    # random directions in 40 dimensions see a fraction of it
    rand = sharpness(model, batches, spec, rho, 200, "max", "ball", progress=False)
    assert res.value > 1.5 * rand.value
    assert torch.equal(model.theta.detach(), before) and model.theta.requires_grad


@pytest.fixture(scope="module")
def emt_data(tmp_path_factory) -> Path:
    return make_emt_dataset(tmp_path_factory.mktemp("pga") / "emt.extxyz", n_frames=4)


def tiny_allegro(dtype: torch.dtype):
    from legato.models import Allegro

    torch.manual_seed(0)
    return Allegro(["Al", "Cu"], **SMALL_MODEL).to(dtype).eval()


def test_tiny_allegro_gradient_worst_case_and_restoration(emt_data, dtype):
    model = tiny_allegro(dtype)
    batches = model_batches(model, ase.io.read(emt_data, ":"), 2, progress=False)
    spec = LossSpec(energy=1.0, forces=1.0, scale=1.0)
    params = list(model.parameters())
    state = {k: v.clone() for k, v in model.state_dict().items()}
    # the loss of the ascent is dataset_loss; its gradient matches a central difference
    loss, grad = loss_and_gradient(model, batches, spec, params)
    assert grad is not None and not model.training
    assert loss == pytest.approx(
        dataset_loss(model, batches, spec), rel=1e-12 if dtype == torch.float64 else 1e-5
    )
    if dtype == torch.float64:
        gen = torch.Generator().manual_seed(1)
        v = [torch.randn(p.shape, generator=gen, dtype=dtype) for p in params]
        h, ends = 1e-5, []
        for sign in (1, -1):
            with torch.no_grad():
                for p, x in zip(params, v, strict=True):
                    p.add_(sign * h * x)
            ends.append(dataset_loss(model, batches, spec))
            model.load_state_dict(state)
        fd = (ends[0] - ends[1]) / (2 * h)
        assert sum(float((g * x).sum()) for g, x in zip(grad, v, strict=True)) == pytest.approx(fd, rel=1e-6)
    rho = 0.01
    rand = sharpness(model, batches, spec, rho, 20, "max", "ball", progress=False)
    res = worst_case_sharpness(model, batches, spec, rho, steps=3, restarts=1, progress=False)
    assert res.value >= rand.max > 0
    assert res.value >= res.trace[0]["value"]  # never below the SAM point
    assert [t["restart"] for t in res.trace] == [0] * 4 + [1] * 4
    assert max(t["eps_norm"] for t in res.trace) <= rho * (1 + 1e-6)
    assert res.n_parameters == sum(p.numel() for p in params) and res.eps_norm <= rho * (1 + 1e-6)
    # weights, flags and mode exactly as before
    after = model.state_dict()
    assert all(torch.equal(after[k], state[k]) for k in state)
    assert all(p.requires_grad for p in params) and not model.training
    print(f"{dtype}: random max {rand.max:.4e}, worst case {res.value:.4e}")


def test_bad_arguments_raise():
    model, batches, _, _ = quadratic_problem(torch.float64, False)
    for kwargs in (
        {"rho": 0.0},
        {"rho": float("nan")},
        {"steps": -1},
        {"step_fraction": 0.0},
        {"restarts": -2},
    ):
        with pytest.raises(LegatoError):
            worst_case_sharpness(model, batches, LossSpec(), **({"rho": 0.05} | kwargs), progress=False)


def legato_script() -> str:
    path = Path(sys.executable).parent / "legato"
    found = str(path) if path.exists() else shutil.which("legato")
    assert found, "the legato console script is not installed (pip install -e .)"
    return found


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [legato_script(), "sharpness", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_cli_method_both_and_bad_values(emt_data, tmp_path, capsys):
    from legato.models.io import save_model

    model = tmp_path / "model.pt"
    save_model(tiny_allegro(torch.float64), model)
    out = tmp_path / "s.json"
    common = [str(model), str(emt_data), "--max-frames", "2", "--no-progress"]
    res = run_cli(*common, "--method", "both", "--samples", "4", "--pga-steps", "2", "--json", str(out))
    assert res.returncode == 0, res.stderr
    assert "worst-case sharpness (PGA" in res.stdout and "sharpness (max over 4 ε" in res.stdout
    data = json.loads(out.read_text())
    assert data["method"] == "both" and data["samples"] == 4 and data["n_frames"] == 2
    worst = data["worst_case"]
    assert worst["value"] >= data["max"] and len(worst["trace"]) == 3 and worst["steps"] == 2
    # bad values: one error line before any work; the installed script shows no traceback
    res = run_cli(*common, "--pga-steps", "-1")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines() == ["error: --pga-steps must be >= 0 (got -1)"]
    for bad, message in (
        (["--rho", "-0.1", "--method", "pga"], "error: --rho must be > 0 (got -0.1)"),
        (["--rho", "0", "--method", "both"], "error: --rho must be > 0 (got 0.0)"),
        (["--pga-restarts", "-1"], "error: --pga-restarts must be >= 0 (got -1)"),
        (["--pga-step-fraction", "0"], "error: --pga-step-fraction must be > 0 (got 0.0)"),
    ):
        assert main(["sharpness", str(tmp_path / "missing.pt"), str(emt_data), *bad]) == 2
        assert capsys.readouterr().err.strip().splitlines() == [message]
