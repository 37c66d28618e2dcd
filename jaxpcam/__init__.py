"""jaxpcam: a reproducible JAX training pipeline for PatchCamelyon (PCAM)."""

from jaxpcam.runtime import apply_cpu_defaults, apply_gpu_determinism, keep_freed_memory

__version__ = "0.1.0"

apply_cpu_defaults()
apply_gpu_determinism()
keep_freed_memory()
