#!/usr/bin/env bash
# LUMI-like AMD cluster: a sweep as a job array, one point per task on one GCD.
#   DATA=... [CONTAINER=...] sbatch --account=project_X --array=0-17 launch/lumi/sweep_array.sh
# Afterwards: python -m jaxpcam.sweep --config configs/sweep_mlp.py --summary
#SBATCH --job-name=jaxpcam-sweep
#SBATCH --partition=small-g
#SBATCH --array=0-17
#SBATCH --nodes=1
#SBATCH --gpus-per-node=1
#SBATCH --cpus-per-task=7
#SBATCH --mem=60G
#SBATCH --time=02:00:00
#SBATCH --signal=B:TERM@120
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=slurm-%x-%A_%a.out
set -euo pipefail
cd "${SLURM_SUBMIT_DIR:-$(dirname "$0")/../..}"
source launch/lumi/env.sh

jaxpcam_sweep_task --config.data.num_workers=6 "$@"
