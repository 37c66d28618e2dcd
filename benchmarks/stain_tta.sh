#!/usr/bin/env bash
# The README's "what helped on the sample" table: configs/cnn.py on the built-in sample, 3 seeds per
# stain-augmentation strength, each evaluated on test with and without --tta, then one report.
#
#   bash benchmarks/stain_tta.sh [RUNS] [SAMPLE_VERSION] [STRENGTHS]
#   bash benchmarks/stain_tta.sh runs/stain_tta_v2 2 "0.0 0.2 0.5"     # the defaults
#
# About 2 minutes per run on a 2-core CPU (9 runs with the defaults). Not a speed benchmark.
set -euo pipefail
runs=${1:-runs/stain_tta_v2}
version=${2:-2}
strengths=${3:-0.0 0.2 0.5}
python=${PYTHON:-python}
for stain in $strengths; do
  for seed in 42 43 44; do
    workdir="$runs/stain$stain/seed$seed"
    "$python" -m jaxpcam.main --config configs/cnn.py --workdir "$workdir" --config.seed="$seed" \
      --config.data.sample_version="$version" --config.data.stain_augment="$stain"
    "$python" -m jaxpcam.evaluate --workdir "$workdir" --split test
    "$python" -m jaxpcam.evaluate --workdir "$workdir" --split test --tta
  done
done
"$python" -m jaxpcam.report "$runs" --metrics val_roc_auc,test_roc_auc,test_roc_auc_tta
