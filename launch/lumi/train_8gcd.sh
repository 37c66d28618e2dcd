#!/usr/bin/env bash
# LUMI-like AMD cluster: a full node, 8 GCDs, one process driving all eight.
#   DATA=... [CONTAINER=...] sbatch --account=project_X launch/lumi/train_8gcd.sh --config.data.batch_size=1024
#SBATCH --job-name=jaxpcam-8gcd
#SBATCH --partition=standard-g
#SBATCH --nodes=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=56
#SBATCH --exclusive
#SBATCH --time=04:00:00
#SBATCH --signal=B:TERM@120
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=slurm-%x-%j.out
set -euo pipefail
cd "${SLURM_SUBMIT_DIR:-$(dirname "$0")/../..}"
source launch/lumi/env.sh

jaxpcam_train --config.data.num_workers=24 "$@"
