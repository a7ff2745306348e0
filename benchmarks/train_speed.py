"""Training cost of SAM versus Adam: time per epoch on the same data and model.

SAM needs two forward + backward passes per batch (at w and at w + ε), so its epoch should
cost about twice Adam's; the goal is a ratio ≤ 2.1 (the paper reports 433 s / 248 s = 1.75
per epoch on GPUs, Table 3). Two trainers are built from one config (same seed, so the same
initial weights and batch order), one with ``sam.enabled: false`` and one with
``sam.enabled: true``; their training epochs run in lockstep, batch by batch, alternating
which goes first (Adam SAM, SAM Adam, ...), so that changes in load from other processes and
cache effects hit both alike. An epoch's time is the sum of its step times (forward, backward,
optimiser, EMA, metrics; batching excluded); the medians over epochs are compared.
Validation is not timed.

    python benchmarks/train_speed.py [--config configs/train_small_allegro.yaml]
        [--data FILE] [--frames 16] [--epochs 3] [--threads 1] [--rho 0.005] [--adaptive]

Without the data file named in the config, a small EMT Cu/Al dataset is made instead.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def lockstep_epoch(trainers: dict) -> dict[str, float]:
    """One training epoch of every trainer, interleaved batch by batch (A B, B A, A B, ...)
    so that changes in machine load and cache effects hit all alike; returns each trainer's
    summed step time."""
    from legato.train.data import iterate_batches
    from legato.train.metrics import MetricsAccumulator

    iters, accs, spent = {}, {}, dict.fromkeys(trainers, 0.0)
    for name, t in trainers.items():
        t.model.train()
        order = torch.randperm(len(t.train_graphs), generator=t.shuffle_gen).tolist()
        iters[name] = iterate_batches(t.train_graphs, t.cfg.training.batch_size, order)
        accs[name] = MetricsAccumulator(t.type_names, t.loss_spec)
    for k, batches in enumerate(zip(*iters.values(), strict=True)):
        pairs = list(zip(trainers.items(), batches, strict=True))
        for (name, t), batch in pairs if k % 2 == 0 else pairs[::-1]:  # A B, B A, A B, ...
            start = time.perf_counter()
            t._step(batch, accs[name])
            spent[name] += time.perf_counter() - start
    for name in trainers:
        accs[name].compute()
    return spent


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=str(ROOT / "configs" / "train_small_allegro.yaml"))
    p.add_argument("--data", help="labelled frames to use instead of the config's data file")
    p.add_argument("--frames", type=int, default=16, help="training frames per epoch")
    p.add_argument("--epochs", type=int, default=3, help="timed epochs per optimiser")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rho", type=float, default=0.005)
    p.add_argument("--adaptive", action="store_true", help="ASAM instead of SAM")
    args = p.parse_args()
    os.chdir(ROOT)
    torch.set_num_threads(args.threads)

    from legato.train.config import load_config
    from legato.train.trainer import Trainer

    cfg = load_config(args.config)
    tmp = Path(tempfile.mkdtemp(prefix="train_speed_"))
    if args.data:
        cfg.data.path, cfg.data.split_key = str(Path(args.data).resolve()), None
    if not Path(cfg.data.path).is_file():
        sys.path.insert(0, str(ROOT / "tests"))
        from train_utils import make_emt_dataset

        print(f"{cfg.data.path} not found: using an EMT Cu/Al dataset (16-atom cells)")
        cfg.data.path = str(make_emt_dataset(tmp / "emt.extxyz", n_frames=args.frames + 1))
        cfg.data.split_key = None
        cfg.model.pop("type_names", None)
    cfg.data.n_train, cfg.data.n_val = args.frames, 0
    cfg.training.num_threads = args.threads
    cfg.training.progress = False
    cfg.training.max_time_minutes = None
    trainers = {}
    for name, enabled in (("Adam", False), ("SAM", True)):
        c = cfg.model_copy(deep=True)
        c.run_dir = str(tmp / name)
        c.sam.enabled, c.sam.rho, c.sam.adaptive = enabled, args.rho, args.adaptive
        trainers[name] = Trainer.create(c)
    t0 = trainers["Adam"]
    n_atoms = sum(int(g["num_atoms"].sum()) for g in t0.train_graphs)
    n_edges = sum(g["edge_index"].shape[1] for g in t0.train_graphs)
    n_par = sum(p.numel() for p in t0.model.parameters())
    print(
        f"{args.frames} frames ({n_atoms} atoms, {n_edges} edges), batch "
        f"{cfg.training.batch_size}, {n_par} parameters, {cfg.training.dtype}, "
        f"{args.threads} thread(s), base optimiser {cfg.optimizer.name}"
    )
    for t in trainers.values():  # warm-up epoch (allocator, first-call costs)
        t._train_epoch()
    times: dict[str, list[float]] = {k: [] for k in trainers}
    for _ in range(args.epochs):
        for name, seconds in lockstep_epoch(trainers).items():
            times[name].append(seconds)
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, v in times.items():
        print(f"{k:4s} epoch: median {med[k]:.2f} s  (all: {', '.join(f'{x:.2f}' for x in v)})")
    kind = "ASAM" if args.adaptive else "SAM"
    ratio = med["SAM"] / med["Adam"]
    print(f"{kind}/Adam epoch-time ratio: {ratio:.2f}  (goal <= 2.1: {'met' if ratio <= 2.1 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
