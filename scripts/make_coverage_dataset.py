"""Regenerate data/nh3_coverage_gfn1.extxyz.gz (data/README.md, "Coverage"): ring-polymer
bead configurations of liquid and crystalline NH3, and gas-phase molecules and clusters, all
labelled with GFN1-xTB like the liquid and crystal sets. Resumable: rerun after an
interruption (the PIMD run resumes, labelling continues frame by frame).

    python scripts/make_coverage_dataset.py --crystal-beads runs/fig6/pimd/beads_000.extxyz

--crystal-beads: the beads file of the Fig. 6 crystal run (configs/fig6_pimd.yaml, NH3 at
150 K, 32 beads). The liquid beads come from a 16-bead NVT-PIMD run of NH3 at 220 K made here
(WORK/liquid_pimd). Clusters of 1-8 molecules are cut from liquid and crystal frames of the
shipped data sets.
"""

from __future__ import annotations

import argparse
import gzip
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

LIQUID_PIMD = """\
structure: {root}/data/nh3_liquid_gfn1.extxyz.gz
structure_index: 0
model: {root}/models/nh3_legato.pt
masses_amu: {{H: 1.008}}
beads: 16
seed: 11
timestep_fs: 0.5
temperature_K: 220.0
steps: 400
schedule:
  - {{ensemble: nvt}}
output:
  directory: {work}/liquid_pimd
  thermo_every: 10
  trajectory_every: 0
  beads_every: 25
  checkpoint_every: 100
"""


def run(cmd: list[str]) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def main() -> int:
    import ase.io

    from legato.data.coverage import bead_frames, clusters, split_by_group
    from legato.data.label import frame_text
    from legato.fileio import atomic_write_bytes, atomic_write_text

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--crystal-beads", required=True, help="beads_000.extxyz of the Fig. 6 crystal run")
    ap.add_argument("--work", default="build/nh3_coverage", help="intermediate files")
    ap.add_argument("--out", default="data/nh3_coverage_gfn1.extxyz.gz")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    work, out = Path(args.work), Path(args.out)
    if out.exists():
        sys.exit(f"{out} exists; refusing to overwrite it")
    work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)

    # 1. liquid NH3 ring polymers (16 beads, 220 K, PILE-L), beads every 12.5 fs
    pimd_dir = work / "liquid_pimd"
    if not (pimd_dir / "summary.json").is_file():
        cfg = work / "liquid_pimd.yaml"
        cfg.write_text(LIQUID_PIMD.format(root=ROOT, work=work.resolve()))
        resume = ["--resume"] if (pimd_dir / "checkpoint.pt").is_file() else []
        run(["legato", "pimd", str(cfg), *resume])

    # 2. unlabelled frames: beads (after 50 fs of NVT) and clusters
    frames_path = work / "frames.extxyz"
    if not frames_path.is_file():
        liquid = [a for a in ase.io.read(pimd_dir / "beads_000.extxyz", ":") if a.info["step"] >= 100]
        crystal = [a for a in ase.io.read(args.crystal_beads, ":") if a.info["step"] >= 200]
        crystal = [crystal[i] for i in np.linspace(0, len(crystal) - 1, min(16, len(crystal))).astype(int)]
        frames = bead_frames(liquid, 4, rng, "liquid_beads") + bead_frames(crystal, 3, rng, "crystal_beads")
        boxes = ase.io.read(ROOT / "data/nh3_liquid_gfn1.extxyz.gz", "::40")
        boxes += ase.io.read(ROOT / "data/nh3_crystal_gfn1.extxyz.gz", "::20")
        frames += clusters(boxes, [1, 2, 3, 4, 6, 8], 10, 4, rng)
        for a, which in zip(frames, split_by_group(frames, rng), strict=True):
            a.info["split"] = which
        atomic_write_text(frames_path, "".join(frame_text(a) for a in frames))
        print(f"{len(frames)} frames -> {frames_path}")

    # 3. GFN1-xTB labels (resumable), then the compressed data set
    labelled = work / "labelled.extxyz"
    run(["legato", "data", "label", str(frames_path), str(labelled), "--workers", str(args.workers)])
    frames = ase.io.read(labelled, ":")
    for a in frames:
        for key in ("label_wall_s", "source_index"):
            a.info.pop(key, None)
    text = "".join(frame_text(a) for a in frames).encode()
    # mtime 0 and no file name in the gzip header: the same frames give the same bytes
    atomic_write_bytes(out, gzip.compress(text, mtime=0))
    print(f"{len(frames)} labelled frames -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
