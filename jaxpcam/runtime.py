"""Process settings applied when jaxpcam is imported, before JAX starts a backend.

XLA:CPU convolutions. jaxlib 0.10 and 0.11 hand every convolution on CPU to YNNPACK, which runs
it on one thread: a stride-1 3x3 conv's kernel gradient took 0.9 s there and 0.15 s in XLA's own
multi-threaded (Eigen) convolution on this project's 2-core machine (benchmarks/README.md).
jaxpcam keeps YNNPACK for dots and reductions (jaxlib's other defaults) and takes convolutions
back. Programs without convolutions compile to exactly the same code. Only the CPU backend is
touched, so GPU runs are unchanged; a user who sets the flag in XLA_FLAGS keeps theirs.

Large host buffers. glibc serves every allocation above 32 MiB with a fresh mmap and returns it
on free, so each step's temporaries (a batch of 512 PCAM tiles in float32 is 57 MB) were faulted
in page by page again: normalizing that batch took 28 ms instead of 4. jaxpcam tells glibc to
keep freed memory for reuse (the process keeps its peak footprint). Skipped where the user
tuned malloc through MALLOC_* variables or preloads another allocator.
"""

import ctypes
import os
import sys
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


M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc <malloc.h>
INT_MAX = 2**31 - 1


def user_tuned_malloc(environ) -> bool:
    return bool(environ.get("LD_PRELOAD")) or any(name.startswith("MALLOC_") for name in environ)


def keep_freed_memory() -> bool:
    """Serve large buffers from the heap and keep them after free (glibc only); True if applied."""
    if not sys.platform.startswith("linux") or user_tuned_malloc(os.environ):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, INT_MAX))
