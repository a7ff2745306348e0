#!/usr/bin/env bash
# Regenerate the shipped crystalline-ND3 dataset data/nh3_crystal_gfn1.extxyz.gz (see
# data/README.md, "Crystal"). Every stage is resumable: rerun after an interruption.
# WORK holds the intermediate per-trajectory files (default: ./build/nh3_crystal_sampling).
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${WORK:-build/nh3_crystal_sampling}
OUT=${OUT:-data/nh3_crystal_gfn1.extxyz.gz}
SPLIT=${SPLIT:-data/nh3_crystal_gfn1.split.json}
WORKERS=${WORKERS:-2}
mkdir -p "$WORK"

# 1. QM-driven Langevin MD (tblite GFN1-xTB, deuterium masses, dt = 2 fs) of a 2x2x2
#    phase-I crystal (32 molecules, 128 atoms) at 50, 100, 150 and 180 K, each at the
#    measured lattice constant of its temperature (legato data crystal). 25 equilibration
#    steps (friction 0.05/fs) discarded, 90 production steps (friction 0.01/fs) stored.
legato data sample md --out-dir "$WORK" --phase crystal --cells 2 --temperatures 50 100 150 180 \
    --boxes 1 --seed 2 --equil-steps 25 --steps 90 --stride 1 --timestep-fs 2.0 \
    --friction-per-fs 0.01 --calculator tblite:GFN1-xTB --workers "$WORKERS"

# 2. Strained (compressed 0.85-0.95 / stretched 1.05-1.10, affine or rigid-molecule) and
#    randomly displaced (Gaussian sigma 0.01-0.04 A) copies of random MD frames.
if [ ! -f "$WORK/derived.extxyz" ]; then
    legato data sample derive "$WORK" --strained 40 --displaced 40 --seed 3 \
        --compress 0.85 0.95 --stretch 1.05 1.10 --displace-A 0.01 0.04 \
        --out "$WORK/derived.extxyz"
fi

# 3. Label them with the same method (resumable, parallel).
legato data label "$WORK/derived.extxyz" "$WORK/derived_labelled.extxyz" \
    --calculator tblite:GFN1-xTB --workers "$WORKERS"

# 4. Merge, record the seeded split (time blocks per trajectory), compress.
if [ ! -f "$OUT" ]; then
    legato data sample finalize "$WORK" --derived "$WORK/derived_labelled.extxyz" \
        --out "$OUT" --split "$SPLIT" --seed 0
fi
