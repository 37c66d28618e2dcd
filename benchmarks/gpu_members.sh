#!/usr/bin/env bash
# Issue 29's GPU rows and issue 26's GPU start-up rows, in one prepared call (about 10 minutes on
# one H100 with the defaults; a lent GPU has 15):
#   1. start-up: each command to its first line / first train step / exit, cold then warm
#      compilation cache, main for mlp, cnn and resnet (startup.py);
#   2. several seeds in one program on a PCAM-size folder with data.placement=device, for the MLP
#      and the CNN: one run alone, then 3 and 8 seeds one after another in one process (sweep)
#      against --vectorize in each layout (members.py). Issue 29's target: 3 seeds within 1.3x
#      the time of the run alone.
#   bash benchmarks/gpu_members.sh OUT_DIR      (BIG=/fast/disk/pcam-size reuses a tiled folder;
#   MODELS, SEEDS8, EPOCHS and ROUNDS shrink it; a CPU smoke run: BIG=<the sample> EPOCHS=1 ...)
set -euo pipefail
out=${1:?usage: bash benchmarks/gpu_members.sh OUT_DIR}
mkdir -p "$out"
here=$(cd "$(dirname "$0")" && pwd)
py=${PYTHON:-python3}
rounds=${ROUNDS:-1}
"$py" "$here/startup.py" --rounds "${STARTUP_ROUNDS:-2}" --models "${STARTUP_MODELS:-mlp,cnn,resnet}" \
  --json "$out/startup.json" | tee "$out/startup.md"

big=${BIG:-$out/pcam-size}
[ -f "$big/camelyonpatch_level_2_split_train_x.h5" ] || "$py" "$here/make_pcam_size.py" "$big"
for model in ${MODELS:-mlp cnn}; do
  set_=(--set "data.dir=$big" --set data.placement=device --set "training.epochs=${EPOCHS:-1}"
        --set checkpoint.every_steps=0)
  "$py" "$here/members.py" --config "configs/$model.py" --seeds 42 --variants sweep --rounds "$rounds" \
    "${set_[@]}" --json "$out/$model-alone.json" | tee "$out/$model-alone.txt"
  for seeds in 42,43,44 "${SEEDS8:-42,43,44,45,46,47,48,49}"; do
    n=$(echo "$seeds" | tr ',' '\n' | wc -l)
    for layout in one_after_another vmap; do
      "$py" "$here/members.py" --config "configs/$model.py" --seeds "$seeds" --variants sweep,vectorized \
        --rounds "$rounds" "${set_[@]}" --set "training.member_layout=$layout" \
        --json "$out/$model-$n-$layout.json" | tee "$out/$model-$n-$layout.txt"
    done
  done
done
"$py" - "$out" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
for alone in sorted(out.glob("*-alone.json")):
    model = alone.name.removesuffix("-alone.json")
    one = json.loads(alone.read_text())["results"]["sweep"]["seconds"]
    one = sorted(one)[len(one) // 2]
    print(f"{model}: one run {one:.1f} s")
    for f in sorted(out.glob(f"{model}-*-*.json")):
        if f.name.endswith("-alone.json"):
            continue
        results = json.loads(f.read_text())["results"]
        for variant, row in results.items():
            s = sorted(row["seconds"])[len(row["seconds"]) // 2]
            print(f"  {f.stem} {variant}: {s:.1f} s = {s / one:.2f}x the run alone")
PY
