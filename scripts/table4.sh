#!/usr/bin/env bash
# Table 4: loss sharpness of Allegro (Adam) with l_max = 0, 1, 2 and of Allegro-Legato (SAM,
# l_max = 1), as the maximum over 100 random directions in the rho = 0.05 ball and as the worst
# case in that ball (projected gradient ascent, the paper's Eq. 2), on 16 training frames.
# The l_max = 1 models are study v2 tier 2's seed-1 models; run that study first:
#   legato study configs/study_v2_paper_model.yaml --out runs/study_v2_paper --resume --max-hours 2.3
# Then, from the repo root (resumable; about 2 x 1.5 h of training plus minutes of sharpness):
#   bash scripts/table4.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=docs/results/table4
PAPER=runs/study_v2_paper/models
mkdir -p "$OUT"
for L in 0 2; do
  run=runs/table4_lmax$L
  if [ -f "$run/summary.json" ]; then
    echo "l_max $L: trained before ($run)"
  elif [ -f "$run/checkpoint.pt" ]; then
    legato train --resume "$run"
  else
    legato train "configs/table4_lmax$L.yaml"
  fi
done
for name in lmax0:runs/table4_lmax0/best_model.pt lmax1:$PAPER/allegro_2x_s1.pt \
            lmax2:runs/table4_lmax2/best_model.pt lmax1_legato:$PAPER/legato_s1.pt; do
  label=${name%%:*}
  model=${name#*:}
  if [ ! -f "$model" ]; then
    echo "error: $model is missing (see the header of this script)" >&2
    exit 1
  fi
  if [ -f "$OUT/$label.json" ]; then
    echo "$label: measured before ($OUT/$label.json)"
    continue
  fi
  legato sharpness "$model" data/nh3_liquid_gfn1.extxyz.gz --subset train --max-frames 16 \
    --rho 0.05 --samples 100 --method both --pga-steps 20 --threads 1 --no-progress \
    --json "$OUT/$label.json"
done
echo "Table 4 results in $OUT/*.json"
