"""jaxpcam: a reproducible JAX training pipeline for PatchCamelyon (PCAM)."""

from jaxpcam.xla_cpu import apply_cpu_defaults

__version__ = "0.1.0"

apply_cpu_defaults()
