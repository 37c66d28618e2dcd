#!/usr/bin/env bash
# Snellius-like NVIDIA cluster: one GPU. Submit from the repository root:
#   DATA=$HOME/pcam sbatch launch/snellius/train_1gpu.sh
#   DATA=$HOME/pcam CONFIG=configs/resnet.py sbatch launch/snellius/train_1gpu.sh --config.training.dtype=bfloat16
# DATA is copied to node-local $TMPDIR first. One H100 is a quarter node: 16 cores.
#SBATCH --job-name=jaxpcam-1gpu
#SBATCH --partition=gpu_h100
#SBATCH --gpus=1
#SBATCH --cpus-per-task=16
#SBATCH --time=04:00:00
#SBATCH --signal=B:TERM@120
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=slurm-%x-%j.out
set -euo pipefail
cd "${SLURM_SUBMIT_DIR:-$(dirname "$0")/../..}"
source launch/snellius/env.sh

jaxpcam_train --config.data.num_workers=8 "$@"
