#!/usr/bin/env bash
# LUMI-like AMD cluster: 2 full nodes x 8 GCDs, one process per GCD started by srun (JAX's
# SLURM detection gives process i of a node GCD i).
#   DATA=... [CONTAINER=...] sbatch --account=project_X launch/lumi/train_multinode.sh --config.data.batch_size=2048
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
source launch/lumi/env.sh

LAUNCHER="srun --kill-on-bad-exit=1" jaxpcam_train --config.data.num_workers=6 "$@"
