#!/usr/bin/env bash
# Issue 23's ablation table: each row of training/configs/synth_tiny_real.yaml at a
# reduced budget (1 lstg + 8 seg epochs) and two seeds, one thread per run so that two
# runs share a 2-core machine. Rows: full recipe, without the box losses (real frames
# only through the label-free losses), without LSTG (conv stem, paper ablation A).
# Usage: bash scripts/real_frames_ablation.sh ROW SEED   (ROW: full | no_boxes | no_lstg)
set -euo pipefail
row=$1; seed=$2
case $row in
  full) extra=() ;;
  no_boxes) extra=(data.boxed=null) ;;
  no_lstg) extra=(model.lstg=false) ;;
  *) echo "unknown row $row (full | no_boxes | no_lstg)" >&2; exit 2 ;;
esac
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} exec .venv/bin/python -m training.train --config training/configs/synth_tiny_real.yaml \
  seg.epochs=8 train.seed="$seed" train.out_dir="runs/abl/${row}_s${seed}" train.progress=false "${extra[@]}"
