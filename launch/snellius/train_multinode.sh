#!/usr/bin/env bash
# Snellius-like NVIDIA cluster: 2 nodes x 4 GPUs, one process per GPU started by srun (JAX's
# SLURM detection gives process i of a node GPU i); each process reads only its rows of every
# global batch; process 0 logs; checkpoints are collective.
#   DATA=$HOME/pcam CONFIG=configs/resnet.py sbatch launch/snellius/train_multinode.sh --config.data.batch_size=1024
#SBATCH --job-name=jaxpcam-multinode
#SBATCH --partition=gpu_h100
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=4
#SBATCH --gpus-per-node=4
#SBATCH --cpus-per-task=16
#SBATCH --time=04:00:00
#SBATCH --signal=B:TERM@120
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=slurm-%x-%j.out
set -euo pipefail
cd "${SLURM_SUBMIT_DIR:-$(dirname "$0")/../..}"
source launch/snellius/env.sh

LAUNCHER="srun --kill-on-bad-exit=1" jaxpcam_train --config.data.num_workers=8 "$@"
