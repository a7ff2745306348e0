"""Regenerate data/nh3_coverage_gfn1.extxyz.gz (data/README.md, "Coverage"): ring-polymer
bead configurations of liquid and crystalline NH3, and gas-phase molecules and clusters, all
labelled with GFN1-xTB like the liquid and crystal sets. Resumable: rerun after an
interruption (the PIMD run resumes, labelling continues frame by frame).

    python scripts/make_coverage_dataset.py

The ring polymers are run with the first version of the shipped model
(models/nh3_legato_v1.pt, which these data were made to correct): liquid NH3, 16 beads, 220 K
(WORK/liquid_pimd, 3 min), and the crystal as the first 600 steps of configs/fig6_pimd.yaml
(32 beads, 150 K; WORK/crystal_pimd, about 8 min). Clusters of 1-8 molecules are cut from
liquid and crystal frames of the shipped data sets.
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
model: {root}/models/nh3_legato_v1.pt
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
  trajectory_every: 25
  beads_every: 25
  checkpoint_every: 100
"""

CRYSTAL_PIMD = """\
structure: {work}/crystal_150K.extxyz
model: {root}/models/nh3_legato_v1.pt
beads: 32
seed: 0
timestep_fs: 1.0
temperature_K: 150.0
steps: 600
schedule:
  - {{ensemble: nvt, steps: 500}}
  - {{ensemble: trpmd}}
estimators:
  blocks: 8
output:
  directory: {work}/crystal_pimd
  thermo_every: 10
  trajectory_every: 2
  beads_every: 100
  checkpoint_every: 100
"""


def run_pimd(work: Path, name: str, template: str) -> Path:
    """Run (or resume) one PIMD job of the templates above; its output folder."""
    out = work / name
    if not (out / "summary.json").is_file():
        cfg = work / f"{name}.yaml"
        cfg.write_text(template.format(root=ROOT, work=work.resolve()))
        resume = ["--resume"] if (out / "checkpoint.pt").is_file() else []
        run(["legato", "pimd", str(cfg), *resume])
    return out


def run(cmd: list[str]) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def scaled_crystals(boxes: list, n: int, rng: np.random.Generator) -> list:
    """Crystal frames with molecule centres scaled by 0.84-1.06 (rigid molecules): the
    equation of state from strong compression to beyond thermal expansion."""
    from legato.data.sampling import scale_molecule_centres

    out = []
    for j, s in enumerate(np.linspace(0.84, 1.06, n)):
        a = scale_molecule_centres(boxes[int(rng.integers(len(boxes)))], float(s), 4)
        a.calc = None  # the parent's labels do not hold for the scaled frame
        a.info = {"source": "crystal_eos", "group": f"eos:{j}", "scale": round(float(s), 4)}
        out.append(a)
    return out


def main() -> int:
    import ase.io

    from legato.data.coverage import bead_frames, clusters, split_by_group
    from legato.data.label import frame_text
    from legato.fileio import atomic_write_bytes, atomic_write_text

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
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

    # 1. ring polymers with the first model: liquid NH3 (16 beads, 220 K, PILE-L, beads every
    #    12.5 fs) and crystalline NH3 (the first 600 steps of configs/fig6_pimd.yaml)
    liquid_dir = run_pimd(work, "liquid_pimd", LIQUID_PIMD)
    crystal = work / "crystal_150K.extxyz"
    if not crystal.is_file():
        run(
            [
                "legato",
                "data",
                "crystal",
                "--cells",
                "2",
                "--temperature-K",
                "150",
                "--hydrogen",
                "--out",
                str(crystal),
            ]
        )
    crystal_dir = run_pimd(work, "crystal_pimd", CRYSTAL_PIMD)

    # 2. unlabelled frames: beads (after 50 fs of NVT) and clusters
    frames_path = work / "frames.extxyz"
    if not frames_path.is_file():
        liquid = [a for a in ase.io.read(liquid_dir / "beads_000.extxyz", ":") if a.info["step"] >= 100]
        crystal = [a for a in ase.io.read(crystal_dir / "beads_000.extxyz", ":") if a.info["step"] >= 200]
        per_frame = -(-48 // len(crystal))  # about 48 crystal beads in all (5 frames x 10)
        frames = bead_frames(liquid, 4, rng, "liquid_beads")
        frames += bead_frames(crystal, per_frame, rng, "crystal_beads")
        boxes = ase.io.read(ROOT / "data/nh3_liquid_gfn1.extxyz.gz", "::40")
        crystal_boxes = ase.io.read(ROOT / "data/nh3_crystal_gfn1.extxyz.gz", ":")
        crystal_boxes = [a for a in crystal_boxes if a.info.get("source") == "md"][::18]
        boxes += crystal_boxes
        frames += clusters(boxes, [1, 2, 3, 4, 6, 8], 10, 4, rng)
        frames += scaled_crystals(boxes[-len(crystal_boxes) :], 24, rng)
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
