"""MD engine speed, measured side by side in one run (run on demand, not part of the tests).

1. Loop overhead: MD steps/s versus bare model calls on a fixed graph, at 432 atoms with the
   paper's l_max = 1 Allegro (133,544 parameters, float32). Also the time spent inside the
   model during the MD steps, so overhead = (step time − model time) / model time.
2. Batching: 8 replicas in one batch versus the same 8 run one after another (throughput
   ratio), at 432 atoms and at a small size where per-call costs matter more.
3. Reference: ASE's VelocityVerlet with legato.LegatoCalculator at 432 atoms.
4. Fast vs eager model evaluation in MD (NVE, atom·steps/s): the paper's model at 432 atoms,
   and the robustness study's small model (configs/study.yaml) at 8 × 128 atoms and at 3,456
   atoms (the shipped 128-atom box, 3×3×3). Compilation happens in the warm-up step and is
   reported separately.

Measurements alternate between the contenders (A B A B ...) so that load from other processes
hits both alike; the median of each is reported. Weights are random (speed does not depend on
training); the per-species energy scale is small so the random dynamics stay gentle.

    python benchmarks/md_speed.py [--steps 3] [--threads 1] [--small-molecules 8] [--only-fast]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from ase import Atoms
from ase.build import molecule

from legato.data import atoms_to_graph, read_frames
from legato.md import ForceField, VelocityVerlet, maxwell_boltzmann, state_from_atoms
from legato.models import Allegro, count_parameters

NH3_432 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "nh3_432.lmp"
TYPES = ["H", "N"]


def paper_model(seed: int = 0, max_edges_per_chunk: int | None = None) -> Allegro:
    torch.manual_seed(seed)
    return Allegro(
        type_names=TYPES,
        r_max=6.0,
        l_max=1,
        avg_num_neighbors=80.0,
        per_species_energy_scale=0.02,
        **({} if max_edges_per_chunk is None else {"max_edges_per_chunk": max_edges_per_chunk}),
    ).eval()


def nh3_box(n: int | tuple[int, int, int], a: float = 3.55, seed: int = 0) -> Atoms:
    """Randomly oriented NH3 molecules on an n³ (or n₁×n₂×n₃) grid, about liquid density."""
    shape = (n, n, n) if isinstance(n, int) else tuple(n)
    rng = np.random.default_rng(seed)
    atoms = Atoms(cell=np.diag(np.array(shape, dtype=float) * a), pbc=True)
    for idx in np.ndindex(*shape):
        m = molecule("NH3")
        m.rotate(rng.uniform(0, 360), "z")
        m.rotate(rng.uniform(0, 360), "x")
        m.translate(np.array(idx) * a + a / 2)
        atoms += m
    return atoms


def liquid_432() -> Atoms:
    if NH3_432.exists():
        return read_frames(NH3_432)[0]
    print(f"note: {NH3_432} not found; using a synthetic 6×6×3 grid of NH3 instead")
    return nh3_box((6, 6, 3))


class Timed(torch.nn.Module):
    """Wraps a potential and accumulates the wall time spent in it."""

    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.inner, self.r_max, self.seconds = inner, inner.r_max, 0.0

    def forward(self, graph):
        t = time.perf_counter()
        out = self.inner(graph)
        self.seconds += time.perf_counter() - t
        return out


class MDBench:
    """A batch of replicas advancing with velocity Verlet; ``run(n)`` returns seconds/step."""

    def __init__(self, model, structures, dt_fs: float = 0.5):
        self.pot = Timed(model)
        self.ff = ForceField(self.pot, skin_A=1.0)
        s = state_from_atoms(structures, TYPES, seeds=list(range(len(structures))))
        self.integ = VelocityVerlet(dt_fs)
        self.state = self.integ.init(maxwell_boltzmann(s, 200.0), self.ff)
        self.n_atoms = self.state.n_atoms

    def run(self, n: int) -> tuple[float, float]:
        self.pot.seconds = 0.0
        t = time.perf_counter()
        for _ in range(n):
            self.state = self.integ.step(self.state, self.ff)
        return (time.perf_counter() - t) / n, self.pot.seconds / n


def bare_calls(model, graph, n: int) -> float:
    t = time.perf_counter()
    for _ in range(n):
        out = model(graph)
        out["forces"].sum().item()
    return (time.perf_counter() - t) / n


def ase_verlet(model, atoms: Atoms, n: int, dt_fs: float = 0.5) -> float:
    from ase import units
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
    from ase.md.verlet import VelocityVerlet as AseVerlet

    from legato import LegatoCalculator

    atoms = atoms.copy()
    atoms.calc = LegatoCalculator(model)
    with warnings.catch_warnings():  # ASE 3.29 deprecates the name, not the function
        warnings.simplefilter("ignore", DeprecationWarning)
        MaxwellBoltzmannDistribution(atoms, temperature_K=200.0, rng=np.random.default_rng(0))
    dyn = AseVerlet(atoms, timestep=dt_fs * units.fs)
    dyn.run(1)  # first force call
    t = time.perf_counter()
    dyn.run(n)
    return (time.perf_counter() - t) / n


def alternate(fns: dict, rounds: int) -> dict[str, list]:
    out: dict[str, list] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            out[k].append(fn())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3, help="steps (calls) per measurement")
    ap.add_argument("--rounds", type=int, default=3, help="alternating measurement rounds")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--small-molecules", type=int, default=2, help="small box: n³ NH3")
    ap.add_argument("--skip-large-batch", action="store_true", help="skip 8 × 432 atoms")
    ap.add_argument("--only-fast", action="store_true", help="run only part 4 (fast vs eager)")
    ap.add_argument(
        "--max-edges-per-chunk",
        type=int,
        default=None,
        help="the model's edge chunking (default: the model's, 8,192 edges; 0: none)",
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = paper_model(max_edges_per_chunk=args.max_edges_per_chunk)
    liquid = liquid_432()
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
        f"cpus {os.cpu_count()}, load average {os.getloadavg()[0]:.1f} (shared machine)"
    )
    print(
        f"model: Allegro l_max=1, {count_parameters(model):,} parameters, "
        f"{next(model.parameters()).dtype}, max_edges_per_chunk {model.max_edges_per_chunk}; "
        f"{len(liquid)} atoms"
    )

    if args.only_fast:
        fast_vs_eager(model, liquid, args)
        return

    # 1. loop overhead ----------------------------------------------------------------
    graph = atoms_to_graph(liquid, TYPES, model.r_max, dtype=torch.float32, with_labels=False)
    md = MDBench(model, [liquid])
    md.run(1)
    res = alternate(
        {"bare": lambda: bare_calls(model, graph, args.steps), "md": lambda: md.run(args.steps)}, args.rounds
    )
    bare = statistics.median(res["bare"])
    step = statistics.median(r[0] for r in res["md"])
    inside = statistics.median(r[1] for r in res["md"])
    print(f"\n1. loop overhead at 432 atoms (s per step, median of {args.rounds} × {args.steps})")
    print(f"   bare model call        {bare:8.3f} s  ({1 / bare:.3f} calls/s)")
    print(f"   MD step                {step:8.3f} s  ({1 / step:.3f} steps/s)")
    print(f"   model time inside MD   {inside:8.3f} s")
    print(f"   overhead (step − model inside) / model inside = {(step - inside) / inside:+.2%}")
    print(f"   MD step / bare call − 1                       = {step / bare - 1:+.2%}")
    print(f"   {graph['edge_index'].shape[1]} edges; Verlet builds {md.ff.neighbors.n_builds}")

    # 2. batching -----------------------------------------------------------------------
    gas = []
    for k in range(8):  # isolated molecules: the model's fixed per-call cost dominates
        m = molecule("NH3")
        m.rotate(45.0 * k, "z")
        m.center(vacuum=4.0)
        gas.append(m)
    sizes = [
        ("gas", gas),
        ("box", [nh3_box(args.small_molecules, seed=k) for k in range(8)]),
    ]
    if not args.skip_large_batch:
        sizes.append(("432", [liquid] * 8))
    print("\n2. 8 replicas: one batch vs one after another (atom-steps/s)")
    for name, structs in sizes:
        batched = MDBench(model, structs)
        singles = [MDBench(model, [a]) for a in structs]
        batched.run(1)
        for s in singles:
            s.run(1)
        n = 1 if name == "432" else args.steps
        res = alternate(
            {
                "batched": lambda b=batched, n=n: b.run(n)[0],
                "serial": lambda ss=singles, n=n: sum(s.run(n)[0] for s in ss),
            },
            args.rounds,
        )
        tb, ts = statistics.median(res["batched"]), statistics.median(res["serial"])
        atoms = batched.n_atoms
        print(
            f"   {name:5s} ({len(structs)} × {len(structs[0])} atoms): batched {atoms / tb:9.1f}, "
            f"serial {atoms / ts:9.1f} → batched/serial throughput = {ts / tb:.2f}×"
        )

    # 3. ASE reference ------------------------------------------------------------------
    res = alternate(
        {"ase": lambda: ase_verlet(model, liquid, args.steps), "md": lambda: md.run(args.steps)[0]},
        args.rounds,
    )
    ta, tm = statistics.median(res["ase"]), statistics.median(res["md"])
    print("\n3. ASE VelocityVerlet + LegatoCalculator at 432 atoms")
    print(f"   ASE {ta:.3f} s/step, legato md {tm:.3f} s/step → legato/ASE speed = {ta / tm:.2f}×")
    fast_vs_eager(model, liquid, args)


def study_model() -> Allegro:
    """The robustness study's small model (configs/study.yaml), random weights, float32."""
    import yaml

    cfg = yaml.safe_load((Path(__file__).resolve().parents[1] / "configs" / "study.yaml").read_text())
    torch.manual_seed(0)
    hp = dict(cfg["train"]["model"])
    model = Allegro(**hp, per_species_energy_scale=0.01).float().eval()
    return model


def fast_vs_eager(paper: Allegro, liquid: Atoms, args) -> None:
    """4. NVE atom·steps/s of the same model through the fast compiled path and eagerly."""
    from legato.models.fast import FastAllegro

    shipped = read_frames(Path(__file__).resolve().parents[1] / "data" / "nh3_liquid_gfn1.extxyz.gz", 0)[0]
    small = study_model()
    cases = [
        ("paper model, 432 atoms", paper, [liquid]),
        ("study model, 8 × 128 atoms", small, [shipped] * 8),
        ("study model, 3,456 atoms", small, [shipped.repeat((3, 3, 3))]),
    ]
    print("\n4. fast (compiled) vs eager model evaluation in MD (NVE atom·steps/s)")
    for name, model, structs in cases:
        eager = MDBench(model, structs)
        t0 = time.perf_counter()
        fast = MDBench(FastAllegro(model, compile=True), structs)  # compiles or loads the kernels
        warm = time.perf_counter() - t0
        eager.run(1)
        fast.run(1)
        res = alternate(
            {"eager": lambda e=eager: e.run(args.steps)[0], "fast": lambda f=fast: f.run(args.steps)[0]},
            args.rounds,
        )
        te, tf = statistics.median(res["eager"]), statistics.median(res["fast"])
        n = eager.n_atoms
        print(
            f"   {name:28s} eager {n / te:9.0f}, fast {n / tf:9.0f} → fast/eager = {te / tf:.2f}× "
            f"(first fast step incl. compile {warm:.0f} s)"
        )


if __name__ == "__main__":
    main()
