"""jaxpcam: a reproducible JAX training pipeline for PatchCamelyon (PCAM)."""

__version__ = "0.1.0"
