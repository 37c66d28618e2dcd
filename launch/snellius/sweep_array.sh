#!/usr/bin/env bash
# Snellius-like NVIDIA cluster: a sweep as a job array, one point per task on one GPU.
#   DATA=$HOME/pcam sbatch --array=0-17 launch/snellius/sweep_array.sh            # configs/sweep_mlp.py
#   DATA=$HOME/pcam SWEEP=configs/sweep_seeds.py sbatch --array=0-4 launch/snellius/sweep_array.sh
# A finished point is skipped and an interrupted one resumes, so resubmitting is always safe.
# Afterwards: python -m jaxpcam.sweep --config configs/sweep_mlp.py --summary
#SBATCH --job-name=jaxpcam-sweep
#SBATCH --partition=gpu_h100
#SBATCH --array=0-17
#SBATCH --gpus=1
#SBATCH --cpus-per-task=16
#SBATCH --time=02:00:00
#SBATCH --signal=B:TERM@120
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=slurm-%x-%A_%a.out
set -euo pipefail
cd "${SLURM_SUBMIT_DIR:-$(dirname "$0")/../..}"
source launch/snellius/env.sh

jaxpcam_sweep_task --config.data.num_workers=8 "$@"
