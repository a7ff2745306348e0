"""Sharpness and loss-landscape estimators against a model whose loss is an exact
quadratic in its single parameter, and the evaluate / sharpness / landscape / deploy
commands end to end on a freshly trained small Allegro."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
from train_utils import SMALL_MODEL, make_emt_dataset, small_config

from legato.cli.main import main
from legato.data import keys as K
from legato.errors import LegatoError
from legato.train.landscape import loss_curve, random_direction
from legato.train.loss import LossSpec
from legato.train.sharpness import sample_perturbation, sharpness

K_TRUE = 2.0


class Harmonic(torch.nn.Module):
    """E = ½ k Σ|r|², F = −k r: with labels from k = K_TRUE the loss is C·(k − K_TRUE)²."""

    type_names = ["Cu"]

    def __init__(self, k: float = K_TRUE) -> None:
        super().__init__()
        self.k = torch.nn.Parameter(torch.tensor(k, dtype=torch.float64))

    def forward(self, g: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        r2 = (g[K.POSITIONS] ** 2).sum(1)  # [n_atoms]
        e = torch.zeros(len(g[K.NUM_ATOMS]), dtype=r2.dtype).index_add(0, g[K.BATCH], r2)
        return {K.TOTAL_ENERGY: 0.5 * self.k * e, K.FORCES: -self.k * g[K.POSITIONS]}


def harmonic_batches(n_frames: int = 3, n_atoms: int = 4, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(n_frames):
        pos = torch.randn(n_atoms, 3, generator=gen, dtype=torch.float64)
        g = {
            K.POSITIONS: pos,
            K.SPECIES: torch.zeros(n_atoms, dtype=torch.long),
            K.BATCH: torch.zeros(n_atoms, dtype=torch.long),
            K.NUM_ATOMS: torch.tensor([n_atoms]),
        }
        g.update({k: v.detach() for k, v in Harmonic()(g).items()})
        batches.append(g)
    return batches


def curvature(batches, spec: LossSpec) -> float:
    """C in L(k) = C (k − K_TRUE)²."""
    e = np.mean([float((0.5 * (b[K.POSITIONS] ** 2).sum() / len(b[K.POSITIONS])) ** 2) for b in batches])
    f = float(torch.cat([b[K.POSITIONS] for b in batches]).pow(2).mean())
    return (spec.energy * e + spec.forces * f) / spec.scale**2


def test_perturbation_distributions():
    gen = torch.Generator().manual_seed(1)
    params = [torch.zeros(2, dtype=torch.float64)]
    radii = np.array([float(sample_perturbation(params, 0.5, "ball", gen)[0].norm()) for _ in range(4000)])
    assert radii.max() <= 0.5
    assert abs(np.mean(radii < 0.25) - 0.25) < 0.03  # uniform in a disc: P(r < ρ/2) = 1/4
    big = [torch.zeros(100, 100), torch.zeros(50)]
    eps = sample_perturbation(big, 0.05, "ball", gen)
    assert 0.049 < math.sqrt(sum(float((e**2).sum()) for e in eps)) <= 0.05
    assert eps[0].dtype == torch.float32
    g = sample_perturbation(big, 0.05, "gaussian", gen)[0]
    assert float(g.std()) == pytest.approx(0.05, rel=0.03)


def test_sharpness_of_exact_quadratic():
    batches = harmonic_batches()
    spec = LossSpec(energy=1.0, forces=1.0, scale=1.5)
    c, rho = curvature(batches, spec), 0.05
    model = Harmonic()
    # one parameter: ε uniform in [−ρ, ρ]; max of C ε² over 400 samples is just below C ρ²
    res = sharpness(model, batches, spec, rho, 400, "max", "ball", progress=False)
    assert res.base_loss == pytest.approx(0.0, abs=1e-20)
    assert 0.98 * c * rho**2 < res.value <= c * rho**2 * (1 + 1e-12)
    assert res.stderr < 0.02 * res.value
    assert res.mean == pytest.approx(c * rho**2 / 3, rel=0.15)  # E[ε²] = ρ²/3
    # Gaussian ε with std ρ: mean of C ε² = C ρ², within its standard error
    res = sharpness(model, batches, spec, rho, 400, "mean", "gaussian", progress=False)
    assert abs(res.value - c * rho**2) < 4 * res.stderr
    assert res.stderr == pytest.approx(c * rho**2 * math.sqrt(2 / 400), rel=0.25)
    assert float(model.k.detach()) == K_TRUE  # weights restored exactly


def test_landscape_of_exact_quadratic_and_directions():
    batches = harmonic_batches()
    spec = LossSpec()
    c = curvature(batches, spec)
    model = Harmonic()
    d = random_direction(model, seed=3, normalize="global", scale=0.2)
    assert abs(float(d["k"])) == pytest.approx(0.2)
    ts = np.linspace(-1, 1, 9)
    curve = loss_curve(model, batches, spec, d, ts, progress=False)
    np.testing.assert_allclose(curve, c * (0.2 * ts) ** 2, rtol=1e-10, atol=1e-18)
    assert float(model.k) == K_TRUE
    # same seed → same direction for models of the same architecture
    from legato.models import Allegro

    m1, m2 = Allegro(["Al", "Cu"], **SMALL_MODEL), Allegro(["Al", "Cu"], **SMALL_MODEL)
    d1, d2 = random_direction(m1, 5), random_direction(m2, 5)
    assert all(torch.equal(d1[n], d2[n]) for n in d1)
    assert not torch.equal(d1[next(iter(d1))], random_direction(m1, 6)[next(iter(d1))])
    # filter normalisation: every row of d has the norm of the same row of w
    df = random_direction(m1, 5, normalize="filter", scale=0.5)
    for name, w in m1.named_parameters():
        if w.dim() >= 2:
            dn = df[name].reshape(w.shape[0], -1).norm(dim=1)
            wn = w.detach().double().reshape(w.shape[0], -1).norm(dim=1)
            torch.testing.assert_close(dn, 0.5 * wn)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from legato.train.trainer import train

    root = tmp_path_factory.mktemp("analysis")
    data = make_emt_dataset(root / "emt.extxyz", n_frames=12)
    cfg = small_config(data, root / "run", max_epochs=2)
    cfg["data"].update({"n_train": 8, "n_val": 4})
    train(cfg)
    return root, data, root / "run" / "best_model.pt"


def test_evaluate_sharpness_landscape_commands(trained, capsys):
    root, data, model = trained
    assert main(["evaluate", str(model), str(data), "--subset", "val", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "on 4 frames" in out and "forces Cu" in out and "meV/Å" in out
    assert main(["evaluate", str(model), str(data), "--where", "split=test", "--no-progress"]) == 0
    assert "on 2 frames" in capsys.readouterr().out  # 12 frames, every 6th is "test"
    assert main(["evaluate", str(model), str(data), "--where", "split=nothing"]) == 2
    assert "no frames with split = nothing" in capsys.readouterr().err
    js = root / "sharp.json"
    args = [
        "sharpness",
        str(model),
        str(data),
        "--samples",
        "6",
        "--subset",
        "train",
        "--no-progress",
        "--json",
        str(js),
    ]
    assert main(args) == 0
    res = json.loads(js.read_text())
    assert res["n_frames"] == 8 and res["samples"] == 6 and res["stat"] == "max"
    assert res["value"] == pytest.approx(res["max"]) and res["stderr"] >= 0
    assert main(args) == 2  # never overwrite the JSON
    assert "refusing to overwrite" in capsys.readouterr().err
    prefix = root / "ls"
    args = [
        "landscape",
        str(model),
        str(root / "run" / "last_model.pt"),
        str(data),
        "--points",
        "5",
        "--max-frames",
        "4",
        "--out",
        str(prefix),
        "--no-progress",
    ]
    assert main(args) == 0
    with open(f"{prefix}.csv") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["t", "loss_run/best_model", "loss_run/last_model"]
    assert [float(r[0]) for r in rows[1:]] == [-1.0, -0.5, 0.0, 0.5, 1.0]
    assert (root / "ls.png").stat().st_size > 1000
    assert main(["landscape", str(data)]) == 2


@pytest.mark.slow  # TorchScript compilation takes several seconds
def test_deploy_command(trained, capsys):
    import legato

    root, data, model = trained
    out = root / "model.ts"
    assert main(["deploy", str(model), str(out)]) == 0
    scripted = torch.jit.load(str(out))
    m = legato.load_model(model)
    from legato.data import atoms_to_graph, read_frames

    g = atoms_to_graph(read_frames(data)[0], m.type_names, m.r_max, dtype=torch.float64)
    torch.testing.assert_close(scripted(g)["energy"], m(g)["energy"])
    assert main(["deploy", str(model), str(out)]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err


def test_a_portable_model_copy_takes_its_split_from_the_run_folder(trained, tmp_path):
    """A model file without the run folder in its metadata (as exported by study v2) selects
    its training frames when told the run folder, and says what it needs when not."""
    from legato.models import load_model
    from legato.train.evaluation import select_frames
    from legato.workflows.study_v2_report import portable_model_copy

    root, data, model = trained
    copy = tmp_path / "portable.pt"
    portable_model_copy(model, copy)
    m = load_model(copy)
    with pytest.raises(LegatoError, match="needs the model's run folder with split.json"):
        select_frames(m, data, subset="train")
    frames = select_frames(m, data, subset="train", run_dir=root / "run")
    assert len(frames) == 8
    assert [f.positions.tolist() for f in frames] == [
        f.positions.tolist() for f in select_frames(load_model(model), data, subset="train")
    ]
