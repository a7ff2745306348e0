"""NVE of a held-out liquid-ND3 frame with the reference potential (GFN1-xTB via tblite):
is the time step itself stable, before any model is blamed for a failure?

Velocity Verlet (ASE) from the first held-out 200 K MD frame of the shipped data, velocities
drawn at 200 K (seeded, no net momentum); every 10 steps one CSV row: step, kinetic
temperature (K), total energy per atom (eV), wall seconds. Used in docs/reproduction.md
("Study v2: time step"):

    OMP_NUM_THREADS=1 python scripts/xtb_nve.py --timestep-fs 2.4 --steps 600 --out xtb_nve_2.4fs.csv
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from ase import units
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary
from ase.md.verlet import VelocityVerlet
from tqdm import tqdm

from legato.data import read_frames
from legato.data.label import make_calculator
from legato.fileio import atomic_write_text

DATA = Path(__file__).resolve().parents[1] / "data" / "nh3_liquid_gfn1.extxyz.gz"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--timestep-fs", type=float, required=True)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--calculator", default="tblite:GFN1-xTB")
    ap.add_argument("--out", required=True, help="CSV file (rewritten every 10 steps)")
    args = ap.parse_args()
    if Path(args.out).exists():
        raise SystemExit(f"error: {args.out} exists; choose another --out")
    frames = read_frames(DATA)
    atoms = next(a for a in frames if a.info.get("split") == "test" and a.info.get("temperature_K") == 200)
    atoms = atoms.copy()
    atoms.calc = make_calculator(args.calculator)
    MaxwellBoltzmannDistribution(atoms, temperature_K=200.0, rng=np.random.default_rng(args.seed))
    Stationary(atoms)
    md = VelocityVerlet(atoms, timestep=args.timestep_fs * units.fs)
    n, t0 = len(atoms), time.time()
    rows = ["step,temperature_K,total_energy_eV_per_atom,wall_s"]
    for k in tqdm(range(args.steps // 10), desc=f"NVE {args.timestep_fs} fs", unit="10 steps"):
        md.run(10)
        ek, ep = atoms.get_kinetic_energy(), atoms.get_potential_energy()
        temp = ek / (1.5 * n * units.kB)
        rows.append(f"{(k + 1) * 10},{temp:.2f},{(ek + ep) / n:.6f},{time.time() - t0:.0f}")
        atomic_write_text(args.out, "\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
