#!/usr/bin/env bash
# The GPU table in benchmarks/README.md, in one command:
#   1. mlp, cnn and resnet, float32 and bfloat16, train and forward, synthetic device-resident
#      batches (the step alone), with deterministic GPU ops (the default) and without;
#   2. end to end, host H5 pipeline (Grain workers) vs data.placement=device, at batch 128 and 512;
#   3. a PCAM-size folder (the sample tiled 32x) trained for 2 epochs per model with
#      data.placement=device: seconds per epoch + validation from the log, twice, and the two
#      metrics.jsonl compared (bit-identical twin runs);
#   4. PyTorch on the same GPU when torch is importable: eager steps, the seeds' pipeline and the
#      data-on-device loop;
#   5. what each training feature costs end to end (features.py) for mlp, cnn and resnet; the cost
#      of training.deterministic is the step-level pair of part 1 (XLA reads its flag once per
#      process, so it cannot be a row of one in-process run).
#   bash benchmarks/gpu_table.sh OUT_DIR        (BIG=/fast/disk/pcam-size to reuse a tiled folder)
set -euo pipefail
out=${1:?usage: bash benchmarks/gpu_table.sh OUT_DIR}
mkdir -p "$out/jax" "$out/runs"
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
py=${PYTHON:-python3}
batches=${BATCH_SIZES:-1,32,128,512}
# A GPU step of the small models takes ~0.1-1 ms: windows need hundreds of steps to be timeable.
for model in ${MODELS:-mlp cnn resnet}; do
  steps=${STEPS:-200}
  [ "$model" = resnet ] && steps=${RESNET_STEPS:-20}
  for dtype in float32 bfloat16; do
    "$py" "$here/throughput.py" --model "$model" --dtype "$dtype" --batch_sizes "$batches" \
      --steps "$steps" --json "$out/jax/$model-$dtype.json"
  done
  "$py" "$here/throughput.py" --model "$model" --mode train --deterministic off --batch_sizes 128,512 \
    --steps "$steps" --json "$out/jax/$model-float32-nondeterministic.json"
  for source in h5 device; do
    "$py" "$here/throughput.py" --model "$model" --mode train --source "$source" --batch_sizes 128,512 \
      --num_workers "${NUM_WORKERS:-8}" --steps "$steps" --json "$out/jax/$model-$source-float32.json"
  done
done
"$py" "$here/results_table.py" "$out"/jax/*.json | tee "$out/table.md"

big=${BIG:-$out/pcam-size}
[ -f "$big/camelyonpatch_level_2_split_train_x.h5" ] || "$py" "$here/make_pcam_size.py" "$big"
for model in mlp cnn; do
  for twin in a b; do
    (cd "$repo" && "$py" -m jaxpcam.main --config "configs/$model.py" --config.data.dir="$big" \
      --config.data.placement=device --config.data.batch_size=512 --config.training.epochs=2 \
      --config.checkpoint.every_steps=0 --workdir "$out/runs/$model-$twin") 2>&1 | tee "$out/runs/$model-$twin.log"
  done
  "$py" - "$out/runs/$model-a" "$out/runs/$model-b" <<'EOF'
import json, sys
timing = {"images_per_second", "data_wait_fraction"}
runs = [[{k: v for k, v in json.loads(l).items() if k not in timing} for l in open(f"{d}/metrics.jsonl")] for d in sys.argv[1:]]
print("twin runs bit-identical:", runs[0] == runs[1])
EOF
done

if "$py" -c "import torch, sys; sys.exit(not torch.cuda.is_available())" 2>/dev/null; then
  for model in mlp cnn; do
    "$py" "$here/torch_reference.py" --device cuda --model "$model" --batch_sizes 128,512 \
      --steps "${STEPS:-200}" --windows 5 --resident --data_dir "$big" --json "$out/torch-$model-cuda.json"
  done
  "$py" "$here/torch_reference.py" --device cuda --batch_sizes '' --pipeline --data_dir "$big" \
    --json "$out/torch-seeds-pipeline-cuda.json"
fi
"$py" "$here/cnn_parity.py" --batch_size 128 --steps "${STEPS:-200}" --windows 5 | tee "$out/cnn_parity.txt"
"$py" "$here/data_pipeline.py" --workers 0,4,8,14 --batch_size 512 --batches 40 --json "$out/data_pipeline.json"
"$py" "$here/features.py" --models mlp,cnn,resnet --steps "${FEATURE_STEPS:-64}" --rounds 3 \
  --json "$out/features.json" --markdown "$out/features.md"
