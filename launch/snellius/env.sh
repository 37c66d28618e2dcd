# Snellius-like NVIDIA cluster: the software every job loads.
# Sourced by the scripts beside this file, after they cd to the repository root.
source launch/lib.sh
# Snellius 2024 software stack (check `module avail Python`): the Python that made the venv
# (`bash launch/install.sh cuda`); its jax[cuda13] wheels bring their own CUDA libraries, so no
# CUDA module is needed.
module load 2024 Python/3.12.3-GCCcore-13.3.0 2>/dev/null || echo "module load failed: using ${VENV:-.venv}"
