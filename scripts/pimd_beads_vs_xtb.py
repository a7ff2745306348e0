"""Model vs GFN1-xTB on the beads of a legato pimd run (the run's own configurations): two
random beads of every bead frame from step FIRST on, relabelled with tblite GFN1-xTB.

    python scripts/pimd_beads_vs_xtb.py runs/fig6/pimd models/nh3_legato.pt 300

Prints per bead the energy error (meV/atom), force RMSE (meV/Å), the closest H–H pair and
whether the molecules are intact, then the summary quoted in docs/pimd.md and models/README.md.
"""

from __future__ import annotations

import sys

import ase.io
import numpy as np
import torch
from tblite.ase import TBLite

from legato.calculator import LegatoCalculator
from legato.data.coverage import bead_frames
from legato.data.liquid import intact_molecules
from legato.models import load_model


def closest_hh(atoms) -> float:
    d = atoms.get_all_distances(mic=True)
    h = np.where(atoms.numbers == 1)[0]
    return float((d[np.ix_(h, h)] + 9.0 * np.eye(len(h))).min())


def main(run: str, model: str, first: int) -> None:
    torch.set_num_threads(1)
    frames = [a for a in ase.io.read(f"{run}/beads_000.extxyz", ":") if a.info["step"] >= first]
    calc = LegatoCalculator(load_model(model))
    de, ferr, hh = [], [], []
    for b in bead_frames(frames, 2, np.random.default_rng(5)):
        ref = b.copy()
        ref.calc = TBLite(method="GFN1-xTB", verbosity=0)
        mod = b.copy()
        mod.calc = calc
        de.append(1000 * (mod.get_potential_energy() - ref.get_potential_energy()) / len(b))
        ferr.append(1000 * np.sqrt(((mod.get_forces() - ref.get_forces()) ** 2).mean()))
        hh.append(closest_hh(b))
        print(
            f"step {b.info['step']} bead {b.info['bead']}: dE {de[-1]:7.2f} meV/atom  "
            f"F RMSE {ferr[-1]:6.1f} meV/A  H-H min {hh[-1]:.2f} A intact {intact_molecules(b, 'NH3')}"
        )
    rms = lambda x: float(np.sqrt(np.mean(np.square(x))))  # noqa: E731
    print(
        f"{len(de)} beads: energy error mean {np.mean(de):.2f} (RMS {rms(de):.2f}) meV/atom, "
        f"force RMSE {rms(ferr):.1f} meV/A, H-H min {min(hh):.2f} A"
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
