"""Speed and memory of the paper's l_max = 1 Allegro (energy + forces): fast vs eager vs floor.

Run on demand:  python benchmarks/model_speed.py [--reps 1,2,3] [--threads 1,2] [--memory-k 4]

For the 432-atom liquid ND3 box (../shared/data/nh3_432.lmp if present, else the box the
package builds) and its k×k×k replicas, each configuration runs in a fresh subprocess
(clean peak-memory reading) and reports time per call, atoms·calls/s and peak RSS.
Beside it, in the same run, the *floor*: the model's own dense layers as plain matrix
products on the same edge count, forward plus input-gradient. Ratio = model / floor.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "nh3_432.lmp"


def base_box():
    from legato.data import read_frames
    from legato.data.liquid import paper_box

    return read_frames(SHARED)[0] if SHARED.exists() else paper_box(seed=0)


def dense_floor(model, n_edges: int, repeats: int):
    """Time of the model's dense layers as plain matmuls (forward + input gradient)."""
    import torch

    shapes: list[tuple[int, int, int]] = []  # (rows, fan_in, fan_out)
    for mod in model.modules():
        if type(mod).__name__ == "_ScaledLinear":
            shapes.append((n_edges, *mod.weight.shape))
    for lin in list(model.linears)[:-1]:  # the last layer's linear output is never used
        for d, n_p, _ in lin.groups:
            shapes.append((n_edges * d, n_p * model.mul, model.mul))
    dtype = next(model.parameters()).dtype
    xs = [torch.randn(r, a, dtype=dtype) for r, a, _ in shapes]
    ws = [torch.randn(a, b, dtype=dtype) for _, a, b in shapes]
    gs = [torch.randn(r, b, dtype=dtype) for r, _, b in shapes]
    flops = sum(2 * 2 * r * a * b for r, a, b in shapes)

    def run():
        for x, w, g in zip(xs, ws, gs):
            x @ w
            g @ w.T

    run()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return min(times), flops


def worker(k: int, threads: int, repeats: int, chunk: int | None, fast: bool) -> dict:
    """One configuration in a fresh process: LegatoCalculator with default arguments (fast)
    or compile=False (eager), energy + forces per call after warm-up; the floor beside eager."""
    import torch
    from ase.calculators.calculator import all_changes

    from legato.calculator import LegatoCalculator
    from legato.data import atoms_to_graph
    from legato.models import Allegro
    from legato.perf import tune_allocator

    tune_allocator()
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    atoms = base_box().repeat((k, k, k))
    kw = {} if chunk is None else {"max_edges_per_chunk": chunk}
    model = Allegro(["H", "N"], l_max=1, avg_num_neighbors=84.0, **kw).float().eval()
    calc = LegatoCalculator(model) if fast else LegatoCalculator(model, compile=False)
    g = atoms_to_graph(atoms, model.type_names, model.r_max, torch.float32, with_labels=False)
    n_edges = int(g["edge_index"].shape[1])
    t0 = time.perf_counter()
    calc.calculate(atoms, ["energy", "forces"], all_changes)  # warm-up (compiles when fast)
    first_s = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        calc.calculate(atoms, ["energy", "forces"], all_changes)
        times.append(time.perf_counter() - t0)
    assert np.isfinite(calc.results["forces"]).all()
    # the model's own peak, read before the floor allocates its operands
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    floor_s, flops = dense_floor(model, n_edges, repeats) if (k <= 3 and not fast) else (float("nan"), 0)
    return dict(
        atoms=len(atoms),
        edges=n_edges,
        threads=threads,
        time_s=min(times),
        first_s=first_s,
        floor_s=floor_s,
        gflop=flops / 1e9,
        peak_gib=peak_gib,
        forces=calc.results["forces"][:50].tolist(),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", default="1,2,3", help="replication factors k (N = 432·k³)")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--memory-k", type=int, default=4, help="also run k (27,648 atoms at k=4), 2 threads; 0 = skip"
    )
    ap.add_argument(
        "--chunk", type=int, default=None, help="max edges per chunk (default: the model's, 8,192; 0: none)"
    )
    ap.add_argument("--worker", nargs=4, type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        k, threads, repeats, fast = args.worker
        print(json.dumps(worker(k, threads, repeats, args.chunk, bool(fast))))
        return
    configs = [(int(k), int(t)) for k in args.reps.split(",") for t in args.threads.split(",")]
    if args.memory_k:
        configs.append((args.memory_k, 2))
    print(
        f"{'atoms':>7} {'edges':>9} {'thr':>3} {'eager s':>8} {'fast s':>7} {'floor s':>8} "
        f"{'fast/floor':>10} {'speed-up':>8} {'compile s':>9} {'peak GiB fast/eager':>19} {'max dF':>8}"
    )
    rows = []
    for k, t in configs:
        reps = args.repeats if k <= 3 else 1
        r = {}
        for mode in ("eager", "fast"):
            res = subprocess.run(
                [sys.executable, __file__, "--worker", str(k), str(t), str(reps), str(int(mode == "fast"))]
                + ([] if args.chunk is None else ["--chunk", str(args.chunk)]),
                capture_output=True,
                text=True,
            )
            if res.returncode != 0:
                print(f"k={k} threads={t} {mode} failed: {res.stderr.strip().splitlines()[-1]}")
                break
            r[mode] = json.loads(res.stdout.strip().splitlines()[-1])
        if len(r) < 2:
            continue
        e, f = r["eager"], r["fast"]
        d_f = float(np.abs(np.array(e["forces"]) - np.array(f["forces"])).max())
        rows.append({**e, "fast_s": f["time_s"]})
        print(
            f"{e['atoms']:>7} {e['edges']:>9} {t:>3} {e['time_s']:>8.3f} {f['time_s']:>7.3f} "
            f"{e['floor_s']:>8.3f} {f['time_s'] / e['floor_s']:>10.2f} {e['time_s'] / f['time_s']:>8.2f} "
            f"{f['first_s'] - f['time_s']:>9.1f} {f['peak_gib']:>9.2f}/{e['peak_gib']:<9.2f} {d_f:>8.1e}",
            flush=True,
        )
    by_t: dict[int, list[dict]] = {}
    for r in rows:
        by_t.setdefault(r["threads"], []).append(r)
    for t, rs in sorted(by_t.items()):
        rs = sorted(rs, key=lambda r: r["atoms"])
        if len(rs) > 1:
            per_atom = [r["fast_s"] / r["atoms"] * 1e6 for r in rs]
            print(
                f"threads={t}, fast: µs per atom per call "
                + ", ".join(f"{r['atoms']}: {p:.0f}" for r, p in zip(rs, per_atom))
                + f"  (largest/smallest = {per_atom[-1] / per_atom[0]:.2f}; 1.00 = linear in N)"
            )


if __name__ == "__main__":
    main()
