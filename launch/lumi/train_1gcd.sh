#!/usr/bin/env bash
# LUMI-like AMD cluster: one GCD (half an MI250X; JAX sees it as one GPU). Set your project:
#   DATA=/scratch/project_X/pcam sbatch --account=project_X launch/lumi/train_1gcd.sh   (venv: launch/install.sh rocm)
#   CONTAINER=/path/to/jax-rocm.sif DATA=/scratch/project_X/pcam sbatch --account=project_X launch/lumi/train_1gcd.sh
#SBATCH --job-name=jaxpcam-1gcd
#SBATCH --partition=small-g
#SBATCH --nodes=1
#SBATCH --gpus-per-node=1
#SBATCH --cpus-per-task=7
#SBATCH --mem=60G
#SBATCH --time=04:00:00
#SBATCH --signal=B:TERM@120
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=slurm-%x-%j.out
set -euo pipefail
cd "${SLURM_SUBMIT_DIR:-$(dirname "$0")/../..}"
source launch/lumi/env.sh

jaxpcam_train --config.data.num_workers=6 "$@"
