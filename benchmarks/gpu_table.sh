#!/usr/bin/env bash
# The GPU table in benchmarks/README.md: mlp, cnn and resnet, float32 and bfloat16, train and
# forward, synthetic device-resident batches, then the MLP end to end from the built-in sample,
# then the same PyTorch models (MLP, seeds' CNN) in eager float32 on the same GPU when torch is importable.
#   bash benchmarks/gpu_table.sh OUT_DIR
set -euo pipefail
out=${1:?usage: bash benchmarks/gpu_table.sh OUT_DIR}
mkdir -p "$out/jax"
here=$(cd "$(dirname "$0")" && pwd)
py=${PYTHON:-python3}
batches=${BATCH_SIZES:-1,32,128,512}
# A GPU step of the small models takes ~0.1-1 ms: windows need hundreds of steps to be timeable.
for model in ${MODELS:-mlp cnn resnet}; do
  steps=${STEPS:-200}
  [ "$model" = resnet ] && steps=${RESNET_STEPS:-20}
  for dtype in float32 bfloat16; do
    "$py" "$here/throughput.py" --model "$model" --dtype "$dtype" --batch-sizes "$batches" \
      --steps "$steps" --json "$out/jax/$model-$dtype.json"
  done
done
"$py" "$here/throughput.py" --model mlp --mode train --source h5 --batch-sizes 128,512 \
  --num-workers "${NUM_WORKERS:-4}" --json "$out/jax/mlp-h5-float32.json"
"$py" "$here/results_table.py" "$out"/jax/*.json | tee "$out/table.md"
if "$py" -c "import torch, sys; sys.exit(not torch.cuda.is_available())" 2>/dev/null; then
  for model in mlp cnn; do
    "$py" "$here/torch_reference.py" --device cuda --model "$model" --batch-sizes 128,512 \
      --steps "${STEPS:-200}" --windows 5 --json "$out/torch-$model-cuda.json"
  done
fi
"$py" "$here/cnn_parity.py" --batch-size 128 --steps "${STEPS:-200}" --windows 5 | tee "$out/cnn_parity.txt"
"$py" "$here/data_pipeline.py" --workers 0,4,8,14 --batch-size 512 --batches 40 --json "$out/data_pipeline.json"
