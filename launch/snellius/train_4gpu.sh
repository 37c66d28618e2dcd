#!/usr/bin/env bash
# Snellius-like NVIDIA cluster: one node, 4 GPUs, one process driving all four (the global
# batch data.batch_size is split over them; it must be a multiple of 4).
#   DATA=$HOME/pcam CONFIG=configs/resnet.py sbatch launch/snellius/train_4gpu.sh --config.data.batch_size=512
#SBATCH --job-name=jaxpcam-4gpu
#SBATCH --partition=gpu_h100
#SBATCH --nodes=1
#SBATCH --gpus=4
#SBATCH --cpus-per-task=64
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

jaxpcam_train --config.data.num_workers=16 "$@"
