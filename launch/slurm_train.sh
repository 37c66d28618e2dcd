#!/usr/bin/env bash
# One training run as a SLURM job that survives preemption and wall-time limits (any cluster;
# launch/snellius/ and launch/lumi/ hold cluster-specific variants).
#
#   sbatch launch/slurm_train.sh                                  # configs/mlp.py
#   CONFIG=configs/cnn.py sbatch launch/slurm_train.sh --config.seed=43
#
# SLURM sends SIGTERM 120 s before the time limit (--signal); training writes a checkpoint and
# exits with 143; the job is then requeued and the same command resumes bit-identically.
# Submit from the repository root. Adapt the #SBATCH lines to your cluster: launch/README.md.
#SBATCH --job-name=jaxpcam
#SBATCH --partition=gpu
#SBATCH --gpus=1
#SBATCH --cpus-per-task=8
#SBATCH --time=04:00:00
#SBATCH --signal=B:TERM@120
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=slurm-%x-%j.out
set -euo pipefail
cd "${SLURM_SUBMIT_DIR:-$(dirname "$0")/..}"
source launch/lib.sh

jaxpcam_train "$@"
