# Sourced by the scripts beside this file, after they cd to the repository root.
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
