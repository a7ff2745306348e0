#!/usr/bin/env bash
# The Fig. 6 reproduction (docs/pimd.md, "Fig. 6"): harmonic phonon DOS vs classical MD vs
# 32-bead TRPMD spectra of the phase-I NH3 crystal at 150 K with the shipped model, and the
# band table. About 40 minutes on this project's 2-core machine. Every step is skipped when
# its output exists, so rerun after an interruption (legato pimd / md resume from their
# checkpoints with --resume; delete an output folder to redo that step).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/fig6}
MODEL=${MODEL:-models/nh3_legato.pt}
mkdir -p "$OUT"

# the 2x2x2-cell crystal for MD and PIMD, and its 16-atom unit cell for phonopy, both at the
# measured 150 K lattice constant (5.126 A), light hydrogen (NH3, as the paper)
[ -f "$OUT/crystal_150K.extxyz" ] || legato data crystal --cells 2 --temperature-K 150 --hydrogen \
    --out "$OUT/crystal_150K.extxyz"
[ -f "$OUT/cell_150K.extxyz" ] || legato data crystal --cells 1 --temperature-K 150 --hydrogen \
    --out "$OUT/cell_150K.extxyz"

# harmonic references: at the MD/PIMD cell (positions relaxed), on the full 8x8x8 q-mesh and
# on the 2x2x2 mesh that the 128-atom MD box can represent; and at the model's own
# zero-temperature cell (cell relaxed too)
[ -d "$OUT/phonons" ] || legato phonons "$OUT/cell_150K.extxyz" --model "$MODEL" --fixed-cell \
    --supercell 2 2 2 --mesh 8 8 8 --output "$OUT/phonons"
[ -d "$OUT/phonons_q2" ] || legato phonons "$OUT/cell_150K.extxyz" --model "$MODEL" --fixed-cell \
    --supercell 2 2 2 --mesh 2 2 2 --output "$OUT/phonons_q2"
[ -d "$OUT/phonons_relaxed_cell" ] || legato phonons "$OUT/cell_150K.extxyz" --model "$MODEL" \
    --supercell 2 2 2 --mesh 8 8 8 --output "$OUT/phonons_relaxed_cell"

# classical MD and 32-bead TRPMD (the configs read runs/fig6/crystal_150K.extxyz)
[ -f "$OUT/md/summary.json" ] || legato md configs/fig6_md.yaml
[ -f "$OUT/pimd/summary.json" ] || legato pimd configs/fig6_pimd.yaml

# band centroids with block errors, shifts from the harmonic reference, the two-panel figure
legato bands harmonic="$OUT/phonons" harmonic_q2="$OUT/phonons_q2" classical="$OUT/md" pimd="$OUT/pimd" \
    --band translational=2:30 --band librational=30:90 --band umbrella=90:160 --band bend=160:240 \
    --band stretch=350:480 --band intermolecular=2:90 --band upper_lattice=30:60 \
    --skip-fs 500 --max-lag-fs 1000 --blocks 4 --output "$OUT/bands" --overwrite \
    --title "NH3 phase I, 150 K: harmonic (fixed cell) vs classical MD vs 32-bead TRPMD"
