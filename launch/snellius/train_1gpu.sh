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
source launch/lib.sh
# Snellius 2024 software stack (check `module avail Python`); the jax[cuda12] wheels in the
# venv bring their own CUDA libraries, so no CUDA module is needed.
module load 2024 Python/3.12.3-GCCcore-13.3.0 2>/dev/null || echo "module load failed: using ${VENV:-.venv}"

jaxpcam_train --config.data.num_workers=8 "$@"
