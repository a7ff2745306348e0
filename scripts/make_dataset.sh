#!/usr/bin/env bash
# Regenerate the shipped liquid-ND3 dataset data/nh3_liquid_gfn1.extxyz.gz (see data/README.md).
# Every stage is resumable: rerun the script after an interruption and it continues.
# WORK holds the intermediate per-trajectory files (default: ./build/nh3_sampling).
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${WORK:-build/nh3_sampling}
OUT=${OUT:-data/nh3_liquid_gfn1.extxyz.gz}
SPLIT=${SPLIT:-data/nh3_liquid_gfn1.split.json}
WORKERS=${WORKERS:-2}
mkdir -p "$WORK"
stamp() { echo "$(date +%s) $1" >> "$WORK/timing.log"; }

# 1. QM-driven Langevin MD (tblite GFN1-xTB, deuterium masses, dt = 2 fs) from 12
#    independently packed 32-molecule boxes: 3 per temperature at 200, 250, 300, 400 K,
#    at the paper's number density (108 ND3 in 16.515^3 A^3 -> 0.7982 g/cm3 with D masses).
#    25 equilibration steps (friction 0.05/fs) are discarded; 90 production steps
#    (friction 0.01/fs) are all stored with the energy, forces and stress of the MD itself.
stamp md_start
legato data sample md --out-dir "$WORK" --temperatures 200 250 300 400 --boxes 3 \
    --seed 0 --molecules 32 --density-g-cm3 0.7982 --equil-steps 25 --steps 90 \
    --stride 1 --timestep-fs 2.0 --friction-per-fs 0.01 --calculator tblite:GFN1-xTB \
    --workers "$WORKERS"
stamp md_end

# 2. Strained (compressed 0.85-0.95 / stretched 1.05-1.10, affine or rigid-molecule) and
#    randomly displaced (Gaussian sigma 0.01-0.04 A per coordinate) copies of random MD
#    frames, ~5% each.
if [ ! -f "$WORK/derived.extxyz" ]; then
    legato data sample derive "$WORK" --strained 56 --displaced 56 --seed 1 \
        --compress 0.85 0.95 --stretch 1.05 1.10 --displace-A 0.01 0.04 \
        --out "$WORK/derived.extxyz"
fi

# 3. Label them with the same method (resumable, parallel).
stamp label_start
legato data label "$WORK/derived.extxyz" "$WORK/derived_labelled.extxyz" \
    --calculator tblite:GFN1-xTB --workers "$WORKERS"
stamp label_end

# 4. Merge, record the seeded split (time blocks per trajectory), compress.
if [ ! -f "$OUT" ]; then
    legato data sample finalize "$WORK" --derived "$WORK/derived_labelled.extxyz" \
        --out "$OUT" --split "$SPLIT" --seed 0
fi
stamp done
