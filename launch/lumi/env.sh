# Sourced by the scripts beside this file, after they cd to the repository root.
source launch/lib.sh
# LUMI-like AMD cluster. JAX for ROCm either from a venv (`bash launch/install.sh rocm`: the
# jax-rocm7-plugin wheel of the release constraints.txt pins, on the ROCm 7 libraries of the
# module ROCM_MODULE, default `rocm`), or from a container (CONTAINER=/path/to/jax-rocm.sif, e.g.
# one of the images in /appl/local/containers/sif-images/); launch/README.md.
if [ -z "${CONTAINER:-}" ]; then
    module load "${ROCM_MODULE:-rocm}" 2>/dev/null || echo "module load ${ROCM_MODULE:-rocm} failed: ROCm 7 must be found otherwise"
    if [ -z "${PYTHON:-}" ] && [ ! -f "${VENV:-.venv}/bin/activate" ]; then
        echo "error: no ${VENV:-.venv}: make it with 'bash launch/install.sh rocm', or set CONTAINER (a ROCm JAX image); see launch/README.md" >&2
        exit 2
    fi
fi
# Compute nodes have no local disk: stage data into /tmp (RAM, counts against --mem).
STAGE_DIR=${STAGE_DIR:-/tmp/${USER}-jaxpcam-data}
# MIOpen (convolutions) keeps a kernel cache; on the shared file system its locks are slow.
export MIOPEN_USER_DB_PATH=/tmp/${USER}-miopen-${SLURM_JOB_ID:-local}
export MIOPEN_CUSTOM_CACHE_DIR=$MIOPEN_USER_DB_PATH
