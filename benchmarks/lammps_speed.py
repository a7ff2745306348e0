"""LAMMPS (pair_style legato) speed, on demand (not part of the tests).

1. Per-step time: LAMMPS on 1 rank × 1 thread versus legato's own MD loop (velocity Verlet,
   the same model evaluated eagerly, as ``legato md --no-compile``), same box and model.
2. Weak scaling 1 → 2 ranks (1 thread each), 432·k atoms per rank: efficiency
   t(1 rank, N) / t(2 ranks, 2N).
3. Strong scaling 1 → 2 ranks at 3,456 atoms (the 432-atom box 2×2×2): speed-up t1/t2 and
   efficiency t1 / (2 t2).

Model: the paper's l_max = 1 Allegro (133,544 parameters, float32, random weights with a small
energy scale so the dynamics stay gentle; speed does not depend on training), deployed as a
TorchScript file. Box: ``../shared/data/nh3_432.lmp`` when present (else a synthetic NH3 grid),
repeated. LAMMPS time per step = "Loop time" of a timed NVE run after a warm-up run (model
loading and the first calls excluded); with ``--repeats R`` the fastest of R timed runs in the
same process (on a shared machine, the least disturbed window). Results: a Markdown table on
stdout and a JSON file.

    python benchmarks/lammps_speed.py [--steps 4] [--repeats 1] [--weak-k 1,2] [--out lammps_speed.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from md_speed import TYPES, MDBench, liquid_432, paper_model  # noqa: E402

from legato.fileio import atomic_write_text  # noqa: E402
from legato.lammps import run_lammps, write_data  # noqa: E402
from legato.lammps.io import input_script  # noqa: E402
from legato.models import count_parameters, export_torchscript  # noqa: E402

_LOOP = re.compile(r"Loop time of ([0-9.eE+-]+) on (\d+) procs for (\d+) steps with (\d+) atoms")


def lammps_step_time(
    atoms, model_file: Path, ranks: int, steps: int, warmup: int, work: Path, repeats: int = 1
) -> dict:
    """Seconds per NVE step in LAMMPS and the pair share: the fastest of ``repeats`` timed runs of
    ``steps`` steps after a warm-up run, in one LAMMPS process (the least disturbed window)."""
    folder = Path(tempfile.mkdtemp(prefix=f"N{len(atoms)}_r{ranks}_", dir=work))
    write_data(atoms, folder / "box.data", TYPES)
    body = (
        "velocity all create 200.0 4928459 mom yes rot no dist gaussian loop geom\n"
        "timestep 0.0005\nfix integrate all nve\nthermo_style custom step temp pe etotal\n"
        f"thermo {steps}\nrun {warmup}\n" + f"run {steps}\n" * repeats
    )
    text = input_script("box.data", str(model_file), TYPES, body, threads=1)
    text = text.replace("compute pe_atom all pe/atom\ncompute s_atom all stress/atom NULL virial\n", "")
    atomic_write_text(folder / "in.lmp", text)
    t0 = time.perf_counter()
    run_lammps("in.lmp", ranks=ranks, threads=1, cwd=folder)
    wall = time.perf_counter() - t0
    log = (folder / "log.lammps").read_text()
    loops = _LOOP.findall(log)[1:]  # the timed runs
    pairs = re.findall(r"^Pair\s*\|\s*[0-9.e+-]+\s*\|\s*([0-9.e+-]+)", log, re.M)[1:]  # avg over ranks
    cpus = re.findall(r"^([0-9.]+)% CPU use with", log, re.M)[1:]  # mean over ranks
    best = min(range(len(loops)), key=lambda k: float(loops[k][0]))
    seconds, procs, n_steps, n_atoms = loops[best]
    pair, cpu = pairs[best:], cpus[best:]
    return {
        "n_atoms": int(n_atoms),
        "ranks": int(procs),
        "s_per_step": float(seconds) / int(n_steps),
        "pair_s_per_step": float(pair[0]) / int(n_steps) if pair else None,
        "process_wall_s": wall,
        # CPU seconds per rank per step: less sensitive than wall time to other jobs on the machine
        "cpu_s_per_rank_step": float(seconds) * float(cpu[0]) / 100 / int(n_steps),
        "all_runs_s_per_step": [float(x[0]) / int(x[2]) for x in loops],
    }


def legato_step_time(model, atoms, steps: int, repeats: int = 1) -> float:
    """Seconds per step of legato's MD loop: the fastest of ``repeats`` runs of ``steps``."""
    bench = MDBench(model, [atoms])
    bench.run(1)  # warm-up
    return min(bench.run(steps)[0] for _ in range(repeats))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=4, help="timed MD steps per measurement")
    ap.add_argument("--warmup", type=int, default=1, help="untimed LAMMPS steps before them")
    ap.add_argument("--repeats", type=int, default=1, help="timed runs per measurement; the fastest counts")
    ap.add_argument("--weak-k", default="1,2", help="atoms per rank = 432·k, k from this list")
    ap.add_argument("--strong-reps", default="2,2,2", help="replication of the 432 box, strong scaling")
    ap.add_argument("--skip-legato", action="store_true", help="skip the legato md comparison")
    ap.add_argument("--out", default="lammps_speed.json", help="JSON results (must not exist)")
    args = ap.parse_args()
    if Path(args.out).exists():
        sys.exit(f"{args.out} exists; refusing to overwrite it")
    torch.set_num_threads(1)
    model = paper_model()
    base = liquid_432()
    work = Path(tempfile.mkdtemp(prefix="lammps_speed_"))
    model_file = work / "paper_model.pth"
    export_torchscript(model, model_file)
    res: dict = {
        "model": f"paper l_max=1 Allegro, {count_parameters(model)} parameters, float32, random weights",
        "base_atoms": len(base),
        "torch": torch.__version__,
        "load_average_start": os.getloadavg(),
        "steps": args.steps,
        "repeats": args.repeats,
    }
    print(f"# {res['model']}; base box {len(base)} atoms; load {os.getloadavg()[0]:.2f}", flush=True)

    # 1. LAMMPS vs legato md, 432 atoms, 1 rank 1 thread
    one = lammps_step_time(base, model_file, 1, args.steps, args.warmup, work, args.repeats)
    res["lammps_1rank_432"] = one
    if not args.skip_legato:
        res["legato_md_432_s_per_step"] = legato_step_time(model, base, args.steps, args.repeats)
    print(f"LAMMPS 1 rank {one['s_per_step']:.3f} s/step; legato md {res.get('legato_md_432_s_per_step')}")

    # 2. weak scaling
    weak = []
    for k in [int(x) for x in args.weak_k.split(",")]:
        reps1 = {1: (1, 1, 1), 2: (1, 1, 2), 4: (1, 2, 2), 8: (2, 2, 2)}[k]
        reps2 = {1: (1, 1, 2), 2: (1, 2, 2), 4: (2, 2, 2), 8: (2, 2, 4)}[k]
        t1 = (
            one
            if k == 1
            else lammps_step_time(
                base.repeat(reps1), model_file, 1, args.steps, args.warmup, work, args.repeats
            )
        )
        t2 = lammps_step_time(base.repeat(reps2), model_file, 2, args.steps, args.warmup, work, args.repeats)
        eff = t1["s_per_step"] / t2["s_per_step"]
        eff_cpu = t1["cpu_s_per_rank_step"] / t2["cpu_s_per_rank_step"]
        weak.append(
            {
                "atoms_per_rank": 432 * k,
                "one_rank": t1,
                "two_ranks": t2,
                "efficiency": eff,
                "efficiency_cpu": eff_cpu,
            }
        )
        print(f"weak k={k}: {t1['s_per_step']:.3f} vs {t2['s_per_step']:.3f} s/step → {eff:.3f}", flush=True)
    res["weak"] = weak

    # 3. strong scaling
    reps = tuple(int(x) for x in args.strong_reps.split(","))
    big = base.repeat(reps)
    s1 = lammps_step_time(big, model_file, 1, args.steps, args.warmup, work, args.repeats)
    s2 = lammps_step_time(big, model_file, 2, args.steps, args.warmup, work, args.repeats)
    res["strong"] = {
        "n_atoms": len(big),
        "one_rank": s1,
        "two_ranks": s2,
        "speedup": s1["s_per_step"] / s2["s_per_step"],
        "efficiency": s1["s_per_step"] / (2 * s2["s_per_step"]),
        "efficiency_cpu": s1["cpu_s_per_rank_step"] / (2 * s2["cpu_s_per_rank_step"]),
    }
    print(f"strong N={len(big)}: {s1['s_per_step']:.3f} vs {s2['s_per_step']:.3f} s/step", flush=True)
    res["load_average_end"] = os.getloadavg()
    atomic_write_text(args.out, json.dumps(res, indent=1) + "\n")

    print("\n| measurement | atoms | ranks | s/step | pair s/step | CPU s/(rank·step) |")
    print("|---|---|---|---|---|---|")
    rows = [("LAMMPS", one)]
    rows += [(f"weak k={w['atoms_per_rank'] // 432}", w[t]) for w in weak for t in ("one_rank", "two_ranks")]
    rows += [("strong", s1), ("strong", s2)]
    for name, r in rows:
        cells = [name, r["n_atoms"], r["ranks"]]
        cells += [f"{r[k]:.3f}" for k in ("s_per_step", "pair_s_per_step", "cpu_s_per_rank_step")]
        print("| " + " | ".join(map(str, cells)) + " |")
    if "legato_md_432_s_per_step" in res:
        print(f"| legato md (eager) | {len(base)} | 1 | {res['legato_md_432_s_per_step']:.3f} | | |")
    wall = ", ".join(f"{w['efficiency']:.3f}" for w in weak)
    cpu = ", ".join(f"{w['efficiency_cpu']:.3f}" for w in weak)
    st = res["strong"]
    print(f"\nweak efficiency: wall {wall}; CPU {cpu}")
    eff = f"efficiency wall {st['efficiency']:.3f}, CPU {st['efficiency_cpu']:.3f}"
    print(f"strong: speed-up {st['speedup']:.2f}, {eff}")


if __name__ == "__main__":
    main()
