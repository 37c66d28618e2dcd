#!/usr/bin/env bash
# One training run as a SLURM job that survives preemption and wall-time limits.
#
#   sbatch launch/slurm_train.sh                                  # configs/mlp.py
#   CONFIG=configs/cnn.py sbatch launch/slurm_train.sh --config.seed=43
#
# SLURM sends SIGTERM 120 s before the time limit (--signal); this script forwards it to
# training, which writes a checkpoint and exits with 143; the job is then requeued and the
# same command resumes bit-identically from that checkpoint. Adapt the #SBATCH lines (and the
# module loads) to your cluster: see launch/README.md.
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
CONFIG=${CONFIG:-configs/mlp.py}
JOB=${SLURM_JOB_ID:-local}
# Stable across requeues (same job id), so the requeued job resumes the same run.
WORKDIR=${WORKDIR:-runs/slurm/${SLURM_JOB_NAME:-jaxpcam}-${JOB}}
VENV=${VENV:-.venv}
if [ -z "${PYTHON:-}" ]; then
    # shellcheck disable=SC1091
    [ -f "$VENV/bin/activate" ] && source "$VENV/bin/activate"
    PYTHON=python
fi

mkdir -p "$WORKDIR"
{
    echo "# job ${JOB} restart ${SLURM_RESTART_COUNT:-0} on $(hostname) at $(date -u +%FT%TZ)"
    command -v module >/dev/null 2>&1 && module list 2>&1
    "$PYTHON" -m pip freeze 2>/dev/null || true
    command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi
    command -v rocm-smi >/dev/null 2>&1 && rocm-smi
} > "$WORKDIR/environment-${JOB}.txt" 2>&1 || true

"$PYTHON" -m jaxpcam.main --config "$CONFIG" --workdir "$WORKDIR" "$@" &
child=$!
trap 'echo "SIGTERM: asking training to checkpoint and stop"; kill -TERM "$child" 2>/dev/null || true' TERM

status=0
wait "$child" || status=$?
if [ "$status" -gt 128 ] && kill -0 "$child" 2>/dev/null; then
    status=0  # the trap interrupted the wait: wait for training to finish its checkpoint
    wait "$child" || status=$?
fi
if [ "$status" -eq 143 ] && [ -n "${SLURM_JOB_ID:-}" ]; then
    echo "training checkpointed on SIGTERM: requeueing job $SLURM_JOB_ID"
    scontrol requeue "$SLURM_JOB_ID"
fi
exit "$status"
