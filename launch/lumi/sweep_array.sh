#!/usr/bin/env bash
# LUMI-like AMD cluster: a sweep as a job array, one point per task on one GCD.
#   CONTAINER=... DATA=... sbatch --account=project_X --array=0-17 launch/lumi/sweep_array.sh
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
source launch/lib.sh
# LUMI-like AMD cluster: ROCm JAX from a container (CONTAINER=/path/to/jax-rocm.sif, e.g. one of
# the images in /appl/local/containers/sif-images/) or a venv made on top of one (launch/README.md).
if [ -z "${CONTAINER:-}${PYTHON:-}${VENV:-}" ]; then
    echo "error: set CONTAINER (a ROCm JAX image) or VENV/PYTHON; see launch/README.md" >&2
    exit 2
fi
# Compute nodes have no local disk: stage data into /tmp (RAM, counts against --mem).
STAGE_DIR=${STAGE_DIR:-/tmp/${USER}-jaxpcam-data}
# MIOpen (convolutions) keeps a kernel cache; on the shared file system its locks are slow.
export MIOPEN_USER_DB_PATH=/tmp/${USER}-miopen-${SLURM_JOB_ID:-local}
export MIOPEN_CUSTOM_CACHE_DIR=$MIOPEN_USER_DB_PATH

jaxpcam_sweep_task --config.data.num_workers=6 "$@"
