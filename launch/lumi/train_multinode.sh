#!/usr/bin/env bash
# LUMI-like AMD cluster: 2 full nodes x 8 GCDs, one process per GCD started by srun (JAX's
# SLURM detection gives process i of a node GCD i).
#   CONTAINER=... DATA=... sbatch --account=project_X launch/lumi/train_multinode.sh --config.data.batch_size=2048
#SBATCH --job-name=jaxpcam-multinode
#SBATCH --partition=standard-g
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=8
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=7
#SBATCH --exclusive
#SBATCH --time=04:00:00
#SBATCH --signal=B:TERM@120
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=slurm-%x-%j.out
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

LAUNCHER="srun --kill-on-bad-exit=1" jaxpcam_train --config.data.num_workers=6 "$@"
