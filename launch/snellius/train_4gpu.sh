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
source launch/snellius/env.sh

jaxpcam_train --config.data.num_workers=16 "$@"
