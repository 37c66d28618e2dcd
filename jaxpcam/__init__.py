"""jaxpcam: a reproducible JAX training pipeline for PatchCamelyon (PCAM).

Importing it changes nothing in the process; commands call jaxpcam.core.runtime.prepare_process()."""

__version__ = "0.1.0"
