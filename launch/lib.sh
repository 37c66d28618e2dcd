# Shared by the launch scripts (sourced, not run). Each script sets its #SBATCH lines and
# modules, then calls these. Variables a user may set before sbatch (exported to the job):
#   VENV=/path/to/venv   PYTHON=/path/to/python   CONTAINER=/path/to/image.sif (runs PYTHON in it)
#   DATA=/path/to/pcam   STAGE_DIR=where to copy DATA on each node (default $TMPDIR/jaxpcam-data)
#   WORKDIR=run directory (train scripts)   SWEEP_DIR=sweep directory (sweep scripts)

# Stable across requeues (same job id), so a requeued job resumes the same run directory.
jaxpcam_job_tag() {
    if [ -n "${SLURM_ARRAY_JOB_ID:-}" ]; then
        echo "${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"
    else
        echo "${SLURM_JOB_ID:-local}"
    fi
}

# Sets the array PY: how to start python: inside CONTAINER (PYTHON there, e.g. a venv made on
# top of the image, else its python3), else PYTHON, else VENV's, else python3 on PATH.
jaxpcam_python() {
    if [ -n "${CONTAINER:-}" ]; then
        local binds="$PWD"
        [ -n "${DATA:-}" ] && binds="$binds,$DATA"
        [ -n "${STAGE_DIR:-}" ] && binds="$binds,$STAGE_DIR"
        local gpu_flag=--nv
        command -v rocm-smi >/dev/null 2>&1 && gpu_flag=--rocm
        PY=(singularity exec "$gpu_flag" --bind "$binds" "$CONTAINER" "${PYTHON:-python3}")
    elif [ -n "${PYTHON:-}" ]; then
        PY=("$PYTHON")
    else
        # shellcheck disable=SC1091
        [ -f "${VENV:-.venv}/bin/activate" ] && source "${VENV:-.venv}/bin/activate"
        PY=(python3)
    fi
}

# Writes what this start ran on into DIR/environment-<tag>.txt (one file per start).
jaxpcam_write_environment() {
    local dir=$1 tag
    tag=$(jaxpcam_job_tag)
    mkdir -p "$dir"
    {
        echo "# job ${tag} restart ${SLURM_RESTART_COUNT:-0} on $(hostname) at $(date -u +%FT%TZ)"
        echo "# nodes ${SLURM_JOB_NODELIST:-$(hostname)} tasks ${SLURM_NTASKS:-1} gpus ${SLURM_GPUS_ON_NODE:-?} per node"
        echo "# container ${CONTAINER:-none} python: ${PY[*]}"
        command -v module >/dev/null 2>&1 && module list 2>&1
        "${PY[@]}" -m pip freeze 2>/dev/null
        command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi
        command -v rocm-smi >/dev/null 2>&1 && rocm-smi
    } > "$dir/environment-${tag}.txt" 2>&1 || true
}

# Copies the PCAM files in $DATA to node-local storage once per node (all nodes of the job),
# and points DATA there: reading 7 GB over a shared file system every epoch is slow.
jaxpcam_stage_data() {
    [ -n "${DATA:-}" ] || return 0
    local target=${STAGE_DIR:-${TMPDIR:-/tmp}/jaxpcam-data}
    local copy="mkdir -p '$target' && cp -u '$DATA'/camelyonpatch_level_2_split_* '$target'/"
    if [ "${SLURM_JOB_NUM_NODES:-1}" -gt 1 ]; then
        srun --ntasks="$SLURM_JOB_NUM_NODES" --ntasks-per-node=1 bash -c "$copy"
    else
        bash -c "$copy"
    fi
    echo "staged $DATA to $target on ${SLURM_JOB_NUM_NODES:-1} node(s)"
    DATA=$target
}

# Runs "$@" so that SLURM's SIGTERM (#SBATCH --signal=B:TERM@120) reaches it, waits for its
# checkpoint, and requeues the job when it stopped on SIGTERM (exit 143).
jaxpcam_run_requeueable() {
    "$@" &
    local child=$! status=0
    trap 'echo "SIGTERM: asking training to checkpoint and stop"; kill -TERM "$child" 2>/dev/null || true' TERM
    wait "$child" || status=$?
    if [ "$status" -gt 128 ] && kill -0 "$child" 2>/dev/null; then
        status=0  # the trap interrupted the wait: let training finish its checkpoint
        wait "$child" || status=$?
    fi
    if [ "$status" -eq 143 ] && [ -n "${SLURM_JOB_ID:-}" ]; then
        echo "checkpointed on SIGTERM: requeueing job $(jaxpcam_job_tag)"
        scontrol requeue "$(jaxpcam_job_tag)"
    fi
    return "$status"
}

# What every job does before it starts Python: choose the interpreter (PY), stage the data,
# record the environment in DIR; DATA_FLAG is the --config.data.dir override, if any.
jaxpcam_prepare() {
    jaxpcam_python
    jaxpcam_stage_data
    jaxpcam_write_environment "$1"
    DATA_FLAG=()
    [ -n "${DATA:-}" ] && DATA_FLAG=(--config.data.dir="$DATA")
    return 0
}

# Trains CONFIG (default configs/mlp.py) in WORKDIR, extra arguments passed on (--config.x=y).
# LAUNCHER="srun" (set by the multi-node scripts) starts one process per task; JAX's
# jax.distributed.initialize() then finds the others through SLURM's variables.
jaxpcam_train() {
    CONFIG=${CONFIG:-configs/mlp.py}
    WORKDIR=${WORKDIR:-runs/slurm/${SLURM_JOB_NAME:-jaxpcam}-$(jaxpcam_job_tag)}
    jaxpcam_prepare "$WORKDIR"
    local launcher=()
    read -r -a launcher <<< "${LAUNCHER:-}"
    jaxpcam_run_requeueable ${launcher[@]+"${launcher[@]}"} "${PY[@]}" -m jaxpcam.main \
        --config "$CONFIG" --workdir "$WORKDIR" ${DATA_FLAG[@]+"${DATA_FLAG[@]}"} "$@"
}

# One point of SWEEP (default configs/sweep_mlp.py) per array task: --array=0-(points-1),
# as `python -m jaxpcam.sweep --config SWEEP --list` counts them.
jaxpcam_sweep_task() {
    SWEEP=${SWEEP:-configs/sweep_mlp.py}
    SWEEP_DIR=${SWEEP_DIR:-runs/$(basename "$SWEEP" .py)}
    : "${SLURM_ARRAY_TASK_ID:?submit as an array job: sbatch --array=0-17 ...}"
    jaxpcam_prepare "$SWEEP_DIR"
    jaxpcam_run_requeueable "${PY[@]}" -m jaxpcam.sweep --config "$SWEEP" --index "$SLURM_ARRAY_TASK_ID" \
        --sweep_dir "$SWEEP_DIR" ${DATA_FLAG[@]+"${DATA_FLAG[@]}"} "$@"
}
