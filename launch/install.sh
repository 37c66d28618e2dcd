#!/usr/bin/env bash
# A venv with jaxpcam and the one JAX release constraints.txt pins, for this cluster's devices:
#   bash launch/install.sh cpu|cuda|rocm [VENV]         (from the repository root; VENV default .venv)
# cpu:  jax and jaxlib alone.
# cuda: plus jax[cuda13]: jax-cuda13-plugin and the CUDA 13 libraries as wheels (no CUDA module).
# rocm: plus jax-rocm7-plugin; the ROCm 7 libraries come from the system (launch/lumi/env.sh loads
#       the rocm module at run time).
# PYTHON picks the interpreter (default python3.12; JAX needs >= 3.12). Offline, pip's own
# PIP_NO_INDEX=1 PIP_FIND_LINKS=/path/to/wheels install from downloaded wheels (launch/README.md).
set -euo pipefail
platform=${1:-}
venv=${2:-${VENV:-.venv}}
case "$platform" in
    cpu) accelerator=() ;;
    cuda) accelerator=("jax[cuda13]") ;;
    rocm) accelerator=(jax-rocm7-plugin) ;;
    *)
        echo "error: name the platform: bash launch/install.sh cpu|cuda|rocm [VENV]" >&2
        exit 2
        ;;
esac
cd "$(dirname "$0")/.."
"${PYTHON:-python3.12}" -m venv "$venv"
"$venv/bin/python" -m pip install -c constraints.txt -e . "${accelerator[@]}"
"$venv/bin/python" -c 'import jax, jaxlib; print(f"installed jax {jax.__version__}, jaxlib {jaxlib.__version__}")'
