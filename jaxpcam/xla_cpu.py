"""XLA:CPU settings applied when jaxpcam is imported, before JAX starts a backend.

jaxlib 0.10 and 0.11 hand every convolution on CPU to YNNPACK, which runs it on one thread:
a stride-1 3x3 conv's kernel gradient took 0.9 s there and 0.15 s in XLA's own multi-threaded
(Eigen) convolution on this project's 2-core machine (benchmarks/README.md). jaxpcam therefore
keeps YNNPACK for dots and reductions (jaxlib's other defaults) and takes convolutions back.
Programs without convolutions compile to exactly the same code. The setting touches only the
CPU backend, so GPU runs are unchanged; a user who sets the flag in XLA_FLAGS keeps theirs.
"""

import os
from importlib import metadata

YNN_FUSION_FLAG = "--xla_cpu_experimental_ynn_fusion_type"
YNN_WITHOUT_CONVOLUTION = f"{YNN_FUSION_FLAG}=individual_dot,reduce"
# An unknown XLA flag aborts the process, so the flag is only set on jaxlib versions known to have it.
JAXLIB_WITH_YNN_CONVOLUTION = ("0.10.", "0.11.")


def with_cpu_defaults(xla_flags: str, jaxlib_version: str) -> str:
    """XLA_FLAGS with jaxpcam's CPU setting added, unless the user set it or jaxlib lacks it."""
    if YNN_FUSION_FLAG in xla_flags or not jaxlib_version.startswith(JAXLIB_WITH_YNN_CONVOLUTION):
        return xla_flags
    return f"{xla_flags} {YNN_WITHOUT_CONVOLUTION}".strip()


def apply_cpu_defaults() -> None:
    try:
        jaxlib_version = metadata.version("jaxlib")
    except metadata.PackageNotFoundError:
        return
    os.environ["XLA_FLAGS"] = with_cpu_defaults(os.environ.get("XLA_FLAGS", ""), jaxlib_version)
