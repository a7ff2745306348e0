"""EMA, config schema, loss and metrics of the trainer, tested against hand computations."""

from __future__ import annotations

import math

import pytest
import torch

from legato.data import keys as K
from legato.errors import LegatoError
from legato.train.config import TrainConfig, parse_config
from legato.train.ema import EMA
from legato.train.loss import LossSpec, loss_terms
from legato.train.metrics import MetricsAccumulator, format_table


# ------------------------------------------------------------------------ EMA
def test_ema_warmup_decay_and_values():
    lin = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        lin.weight.fill_(0.0)
    ema = EMA(lin, decay=0.99)
    shadow = 0.0
    for n in range(2000):
        d = min(0.99, (1 + n) / (10 + n))
        assert ema.current_decay() == pytest.approx(d)
        with torch.no_grad():
            lin.weight.fill_(float(n % 7))
        ema.update(lin)
        shadow = d * shadow + (1 - d) * float(n % 7)
    assert ema.current_decay() == 0.99
    assert ema.shadow["weight"][0, 0].item() == pytest.approx(shadow, rel=1e-5)
    assert EMA(lin, 0.99, use_num_updates=False).current_decay() == 0.99
    # first updates follow the weights: d0 = 0.1
    ema2 = EMA(lin, 0.99)
    with torch.no_grad():
        w_before = lin.weight.clone()
        lin.weight.add_(1.0)
    ema2.update(lin)
    torch.testing.assert_close(ema2.shadow["weight"], 0.1 * w_before + 0.9 * lin.weight)


def test_ema_swap_in_restores_live_weights_and_state_roundtrip():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    ema = EMA(net, 0.9)
    for _ in range(5):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p))
        ema.update(net)
    live = [p.detach().clone() for p in net.parameters()]
    assert all(not torch.equal(ema.shadow[n], q) for n, q in zip(ema.names, live, strict=True))
    with ema.average_parameters(net):
        for p, n in zip(net.parameters(), ema.names, strict=True):
            assert torch.equal(p, ema.shadow[n])
    for p, q in zip(net.parameters(), live, strict=True):
        assert torch.equal(p, q)
    with pytest.raises(RuntimeError), ema.average_parameters(net):
        raise RuntimeError("boom")
    for p, q in zip(net.parameters(), live, strict=True):
        assert torch.equal(p, q)
    other = EMA(net, 0.5)
    other.load_state_dict(ema.state_dict())
    assert other.num_updates == 5 and other.decay == 0.9
    for n in ema.names:
        assert torch.equal(other.shadow[n], ema.shadow[n])


# ------------------------------------------------------------------- config
def base_cfg(**extra):
    cfg = {"run_dir": "r", "data": {"path": "d.xyz"}}
    cfg.update(extra)
    return cfg


def test_defaults_are_table5():
    c = parse_config(base_cfg())
    assert (c.optimizer.name, c.optimizer.lr, c.optimizer.betas) == ("Adam", 2e-3, (0.9, 0.999))
    assert c.optimizer.amsgrad is False
    assert c.training.batch_size == 4 and c.training.dtype == "float32"
    assert (c.lr_scheduler.name, c.lr_scheduler.patience, c.lr_scheduler.factor) == (
        "ReduceLROnPlateau",
        50,
        0.5,
    )
    assert (c.loss.energy, c.loss.forces, c.loss.stress) == (1.0, 1.0, 0.0)
    assert (c.ema.enabled, c.ema.decay, c.ema.use_num_updates) == (True, 0.99, True)
    es = c.early_stopping
    assert (es.patience, es.delta, es.min_lr) == (100, 3e-3, 1e-5)
    assert c.sam.enabled is False and c.sam.rho == 0.005
    assert (c.data.n_train, c.data.n_val, c.data.split_key) == (None, None, None)


@pytest.mark.parametrize(
    "cfg, message",
    [
        (base_cfg(optimiser={}), "unknown config key 'optimiser' (did you mean 'optimizer'?)"),
        (base_cfg(optimizer={"lrr": 1}), "'optimizer.lrr' (did you mean 'lr'?)"),
        (base_cfg(sam={"roh": 0.1}), "'sam.roh' (did you mean 'rho'?)"),
        (base_cfg(model={"l_maxx": 2}), "'model.l_maxx' (did you mean 'l_max'?)"),
        (base_cfg(training={"batchsize": 2}), "(did you mean 'batch_size'?)"),
        ({"run_dir": "r"}, "missing required key 'data'"),
        (base_cfg(training={"dtype": "float16"}), "invalid value for 'training.dtype'"),
        (base_cfg(sam={"rho": -1}), "invalid value for 'sam.rho'"),
        (base_cfg(optimizer=3), "config section 'optimizer' must be a mapping"),
        (base_cfg(model={"r_max": -2.0}), "invalid value for 'model.r_max': Input should be greater than 0"),
        (base_cfg(model={"r_max": "4 A"}), "invalid value for 'model.r_max': Input should be a valid number"),
        (base_cfg(model={"r_max": float("nan")}), "'model.r_max': Input should be a finite"),
        (base_cfg(model={"r_max": float("inf")}), "'model.r_max': Input should be a finite"),
        (base_cfg(model={"num_bessel": 0}), "invalid value for 'model.num_bessel'"),
        (base_cfg(model={"avg_num_neighbors": 0}), "invalid value for 'model.avg_num_neighbors'"),
        (base_cfg(model={"num_layers": 1.7}), "'model.num_layers': Input should be a valid int"),
        (base_cfg(model={"l_max": "one"}), "'model.l_max': Input should be a valid integer"),
        (base_cfg(model={"latent_resnet": "yes"}), "invalid value for 'model.latent_resnet'"),
        (base_cfg(model=[1, 2]), "config section 'model' must be a mapping"),
    ],
)
def test_config_errors_name_the_problem(cfg, message):
    with pytest.raises(LegatoError) as exc:
        parse_config(cfg)
    assert message in str(exc.value)
    assert "\n" not in str(exc.value)


def test_random_and_labelled_splits():
    from ase import Atoms

    from legato.train.data import make_split

    frames = [Atoms("H", info={"split": lab}) for lab in ["train"] * 6 + ["validation"] * 3 + ["test"]]
    c = TrainConfig.model_validate(base_cfg()).data
    train, val = make_split(frames, c, seed=1)
    assert (len(train), len(val)) == (9, 1) and not set(train) & set(val)
    assert make_split(frames, c, seed=1) == (train, val)  # seeded
    assert make_split(frames, c, seed=2) != (train, val)
    c.n_train, c.n_val = 5, 5
    assert [len(x) for x in make_split(frames, c, 0)] == [5, 5]
    c.n_train = 6
    with pytest.raises(LegatoError, match="exceeds"):
        make_split(frames, c, 0)
    c = TrainConfig.model_validate(base_cfg(data={"path": "x", "split_key": "split"})).data
    assert make_split(frames, c, 0) == ([0, 1, 2, 3, 4, 5], [6, 7, 8])
    c.n_train = 0.5
    train, val = make_split(frames, c, 0)
    assert len(train) == 3 and set(train) <= set(range(6)) and val == [6, 7, 8]
    frames.append(Atoms("H"))
    with pytest.raises(LegatoError, match="no 'split' entry"):
        make_split(frames, c, 0)


# ----------------------------------------------------------- loss & metrics
def fake_batch():
    """Two frames (2 + 3 atoms), species [0, 1 | 1, 1, 0], with known errors."""
    graph = {
        K.NUM_ATOMS: torch.tensor([2, 3]),
        K.SPECIES: torch.tensor([0, 1, 1, 1, 0]),
        K.TOTAL_ENERGY: torch.tensor([-2.0, -3.0], dtype=torch.float64),
        K.FORCES: torch.zeros(5, 3, dtype=torch.float64),
    }
    f_err = torch.tensor(
        [[0.1, 0, 0], [0, 0.2, 0], [0, 0, -0.3], [0.4, 0, 0], [0, 0, 0.5]], dtype=torch.float64
    )
    pred = {
        K.TOTAL_ENERGY: torch.tensor([-2.0 + 0.02, -3.0 - 0.06], dtype=torch.float64),
        K.FORCES: f_err,
    }
    return pred, graph, f_err


def test_loss_terms_by_hand():
    pred, graph, f_err = fake_batch()
    spec = LossSpec(energy=2.0, forces=0.5, scale=2.0)
    total, terms = loss_terms(pred, graph, spec)
    e_mse = ((0.02 / 2) ** 2 + (0.06 / 3) ** 2) / 2 / 4.0  # per-atom errors, / σ²
    f_mse = float((f_err**2).sum()) / 15 / 4.0
    assert float(terms["energy"]) == pytest.approx(e_mse)
    assert float(terms["forces"]) == pytest.approx(f_mse)
    assert float(total) == pytest.approx(2.0 * e_mse + 0.5 * f_mse)
    with pytest.raises(LegatoError, match="no stress labels"):
        loss_terms(pred, graph, LossSpec(stress=1.0))
    with pytest.raises(LegatoError):
        LossSpec(energy=0, forces=0)


def test_metrics_by_hand_and_batch_independence():
    pred, graph, f_err = fake_batch()
    spec = LossSpec()
    acc = MetricsAccumulator(["H", "N"], spec)
    acc.update(pred, graph)
    m = acc.compute()
    e = [0.01, 0.02]
    assert m["energy_rmse_meV_atom"] == pytest.approx(1000 * math.sqrt((e[0] ** 2 + e[1] ** 2) / 2))
    assert m["energy_mae_meV_atom"] == pytest.approx(1000 * (e[0] + e[1]) / 2)
    assert m["forces_rmse_meV_A"] == pytest.approx(1000 * math.sqrt(0.55 / 15))
    assert m["forces_mae_meV_A"] == pytest.approx(1000 * 1.5 / 15)
    assert m["forces_rmse_H_meV_A"] == pytest.approx(1000 * math.sqrt((0.01 + 0.25) / 6))
    assert m["forces_mae_N_meV_A"] == pytest.approx(1000 * (0.2 + 0.3 + 0.4) / 9)
    total, _ = loss_terms(pred, graph, spec)
    assert m["loss"] == pytest.approx(float(total))
    # the same frames split over two batches give the same dataset metrics
    acc2 = MetricsAccumulator(["H", "N"], spec)
    for sl_a, sl_f in ((slice(0, 1), slice(0, 2)), (slice(1, 2), slice(2, 5))):
        g = {
            K.NUM_ATOMS: graph[K.NUM_ATOMS][sl_a],
            K.SPECIES: graph[K.SPECIES][sl_f],
            K.TOTAL_ENERGY: graph[K.TOTAL_ENERGY][sl_a],
            K.FORCES: graph[K.FORCES][sl_f],
        }
        p = {K.TOTAL_ENERGY: pred[K.TOTAL_ENERGY][sl_a], K.FORCES: pred[K.FORCES][sl_f]}
        acc2.update(p, g)
    m2 = acc2.compute()
    for key in m:
        assert m2[key] == pytest.approx(m[key])
    table = format_table(m, ["H", "N"])
    assert "forces N" in table and "meV/atom" in table


def test_shipped_configs_are_valid_and_paper_ones_use_table5():
    from pathlib import Path

    from legato.train.config import load_config

    root = Path(__file__).resolve().parents[1] / "configs"
    paths = sorted(root.glob("train_*.yaml"))
    assert {p.name for p in paths} >= {"train_allegro.yaml", "train_legato.yaml"}
    cfgs = {p.name: load_config(p) for p in paths}
    default = parse_config(base_cfg())
    for name in ("train_allegro.yaml", "train_legato.yaml"):
        c = cfgs[name]
        for section in ("loss", "optimizer", "lr_scheduler", "ema", "early_stopping", "training"):
            assert getattr(c, section) == getattr(default, section), (name, section)
    assert not cfgs["train_allegro.yaml"].sam.enabled
    assert cfgs["train_legato.yaml"].sam.enabled and cfgs["train_legato.yaml"].sam.rho == 0.005


def test_gzipped_extxyz_reads_like_plain(tmp_path):
    import gzip

    import numpy as np
    from train_utils import make_emt_dataset

    from legato.data import read_frames

    plain = make_emt_dataset(tmp_path / "d.extxyz", n_frames=3, stress=True)
    gz = tmp_path / "d.extxyz.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    a, b = read_frames(plain), read_frames(gz)
    assert len(a) == len(b) == 3
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(x.positions, y.positions) and x.info["split"] == y.info["split"]
        assert x.get_potential_energy() == y.get_potential_energy()
        assert np.array_equal(x.get_forces(), y.get_forces())
    assert len(read_frames(gz, "1:")) == 2
    bad = tmp_path / "bad.extxyz.gz"
    bad.write_bytes(b"not gzip at all")
    with pytest.raises(LegatoError, match="cannot read"):
        read_frames(bad)
