"""PIMD engine speed (run on demand, not part of the tests).

1. Beads batched vs sequential: the forces of 32 beads × 128 atoms (the shipped ND3 box,
   beads rattled by 0.05 Å) in one batched model call versus 32 calls of one bead each
   (own neighbour lists each, as separate replicas), throughput ratio.
2. Time per PIMD step (TRPMD, BCOCB with Cayley) for 32 beads × 432 atoms: the paper's box
   ../shared/data/nh3_432.lmp if present, else the shipped 128-atom frame repeated 2×2×1
   (512 atoms; said in the output). Also the share of the step spent in the model call.

Model: the architecture of configs/train_small_legato.yaml (the quick start's, 6,232
parameters) or, with ``--model paper``, the paper's (l_max 1, r_max 6 Å), random weights
(speed does not depend on training), float32 as trained. Evaluation is the fast compiled
path unless ``--eager``; compilation happens in the warm-up and is not timed. Measurements
alternate between contenders (A B A B ...) and report the median.

    python benchmarks/pimd_speed.py [--repeats 3] [--threads 1] [--model small|paper] [--eager]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import yaml

from legato.data import read_frames
from legato.md import ForceField
from legato.md.state import state_from_atoms
from legato.models import Allegro, count_parameters
from legato.models.fast import fast_model
from legato.pimd import RingPolymerIntegrator, polymer_momenta

REPO = Path(__file__).resolve().parents[1]
NH3_432 = REPO.parent / "shared" / "data" / "nh3_432.lmp"
TYPES = ["H", "N"]


def model(kind: str) -> Allegro:
    torch.manual_seed(0)
    if kind == "paper":
        hp = dict(r_max=6.0, l_max=1, avg_num_neighbors=80.0)
    else:
        hp = yaml.safe_load((REPO / "configs" / "train_small_legato.yaml").read_text())["model"]
        hp = {k: v for k, v in hp.items() if k != "type_names"}
    return Allegro(type_names=TYPES, per_species_energy_scale=0.02, **hp).float().eval()


def bead_state(atoms, n_beads: int, seed: int = 0):
    frames = []
    for k in range(n_beads):
        a = atoms.copy()
        a.rattle(0.05, seed=seed + k)
        frames.append(a)
    return state_from_atoms(frames, TYPES, seeds=[seed] * n_beads, replica_ids=list(range(n_beads)))


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def batched_vs_sequential(pot, atoms, n_beads: int, repeats: int) -> dict:
    state = bead_state(atoms, n_beads)
    singles = [state.select(torch.arange(n_beads) == k) for k in range(n_beads)]
    ff_all = ForceField(pot, skin_A=1.0)
    ff_one = [ForceField(pot, skin_A=1.0) for _ in range(n_beads)]

    def batched():
        ff_all(state)

    def sequential():
        for ff, s in zip(ff_one, singles, strict=True):
            ff(s)

    batched(), sequential()  # warm-up: compilation, neighbour lists
    tb, ts = [], []
    for _ in range(repeats):
        tb.append(timed(batched))
        ts.append(timed(sequential))
    b, s = statistics.median(tb), statistics.median(ts)
    return {"atoms": len(atoms), "beads": n_beads, "batched_s": b, "sequential_s": s, "ratio": s / b}


def pimd_step(pot, atoms, n_beads: int, repeats: int) -> dict:
    ff = ForceField(pot, skin_A=1.0)
    state = polymer_momenta(bead_state(atoms, n_beads), n_beads, 200.0)
    integ = RingPolymerIntegrator(n_beads, 0.5, 200.0, "trpmd")
    state = integ.init(state, ff)
    state = integ.step(state, ff)  # warm-up
    steps, calls = [], []
    for _ in range(repeats):
        t_model = 0.0

        def counted(s):
            nonlocal t_model
            t = time.perf_counter()
            out = ff(s)
            t_model += time.perf_counter() - t
            return out

        t = time.perf_counter()
        state = integ.step(state, counted)
        steps.append(time.perf_counter() - t)
        calls.append(t_model)
    step = statistics.median(steps)
    return {
        "atoms": len(atoms),
        "beads": n_beads,
        "step_s": step,
        "model_share": statistics.median(calls) / step,
        "ten_ps_trpmd_hours_at_0.5fs": 20000 * step / 3600.0,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--beads", type=int, default=32)
    ap.add_argument("--model", choices=["small", "paper"], default="small")
    ap.add_argument("--eager", action="store_true")
    ap.add_argument("--skip-432", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    net = model(args.model)
    pot = fast_model(net, compile=not args.eager)
    box128 = read_frames(REPO / "data" / "nh3_liquid_gfn1.extxyz.gz", 0)[0]
    out = {
        "model": args.model,
        "parameters": count_parameters(net),
        "compiled": not args.eager,
        "threads": args.threads,
        "torch": torch.__version__,
    }
    out["batched_vs_sequential"] = batched_vs_sequential(pot, box128, args.beads, args.repeats)
    print(json.dumps(out, indent=2), flush=True)
    if not args.skip_432:
        if NH3_432.exists():
            big, where = read_frames(NH3_432)[0], str(NH3_432.name)
        else:
            big, where = box128.repeat((2, 2, 1)), "shipped frame 0 repeated 2x2x1"
        out["pimd_step"] = {"structure": where, **pimd_step(pot, big, args.beads, args.repeats)}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
