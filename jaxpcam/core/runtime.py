"""Process settings applied when jaxpcam is imported, before JAX starts a backend.

XLA:CPU convolutions. jaxlib 0.10 and 0.11 hand every convolution on CPU to YNNPACK, which runs
it on one thread: a stride-1 3x3 conv's kernel gradient took 0.9 s there and 0.15 s in XLA's own
multi-threaded (Eigen) convolution on this project's 2-core machine (benchmarks/README.md).
jaxpcam keeps YNNPACK for dots and reductions (jaxlib's other defaults) and takes convolutions
back. Programs without convolutions compile to exactly the same code.

XLA:CPU multi-output fusion. Without it, Adam's update of one weight is four loop fusions that
each stream the 57 MB first-layer gradient or moments again; the pass (an XLA:CPU backend option)
merges loops that read the same arrays, which made the MLP's batch-128 train step ~13% faster
here. It changes float rounding in the last bits against a run without it, never run to run.

Both are XLA:CPU settings, so GPU runs are unchanged; a user who sets either flag in XLA_FLAGS
keeps theirs.

Large host buffers. glibc serves every allocation above 32 MiB with a fresh mmap and returns it
on free, so each step's temporaries (a batch of 512 PCAM tiles in float32 is 57 MB) were faulted
in page by page again: normalizing that batch took 28 ms instead of 4. jaxpcam tells glibc to
keep freed memory for reuse (the process keeps its peak footprint). Skipped where the user
tuned malloc through MALLOC_* variables or preloads another allocator.

Huge pages. The MLP's 57 MB first-layer weight, its gradient and Adam's moments are streamed
every step; with 4 KiB pages the TLB misses cost 15-50% of the step on this machine. glibc backs
its memory with transparent huge pages when started with GLIBC_TUNABLES=glibc.malloc.hugetlb=1,
which it reads only at process start, so the training commands re-execute themselves once with
it set (before JAX is imported). Set glibc.malloc.hugetlb=0 in GLIBC_TUNABLES to opt out.

The persistent compilation cache (core/compile_cache.py): on, unless JAXPCAM_COMPILE_CACHE=off.
"""

import ctypes
import os
import platform
import sys
from importlib import metadata
from pathlib import Path

from jaxpcam.core import compile_cache
from jaxpcam.core.errors import UserError
from jaxpcam.core.reporting import log

YNN_FUSION_FLAG = "--xla_cpu_experimental_ynn_fusion_type"
YNN_WITHOUT_CONVOLUTION = f"{YNN_FUSION_FLAG}=individual_dot,reduce"
BACKEND_OPTIONS_FLAG = "--xla_backend_extra_options"
CPU_MULTI_OUTPUT_FUSION = f"{BACKEND_OPTIONS_FLAG}=xla_cpu_use_multi_output_fusion"
# An unknown XLA flag aborts the process, so the flags are only set on jaxlib versions known to have them.
JAXLIB_WITH_CPU_DEFAULTS = ("0.10.", "0.11.")


def with_cpu_defaults(xla_flags: str, jaxlib_version: str) -> str:
    """XLA_FLAGS with jaxpcam's CPU settings added, except those the user set or jaxlib lacks."""
    if not jaxlib_version.startswith(JAXLIB_WITH_CPU_DEFAULTS):
        return xla_flags
    ours = [flag for flag in (YNN_WITHOUT_CONVOLUTION, CPU_MULTI_OUTPUT_FUSION) if flag.split("=")[0] not in xla_flags]
    return " ".join([xla_flags, *ours]).strip()


def apply_cpu_defaults() -> None:
    try:
        jaxlib_version = metadata.version("jaxlib")
    except metadata.PackageNotFoundError:
        return
    os.environ["XLA_FLAGS"] = with_cpu_defaults(os.environ.get("XLA_FLAGS", ""), jaxlib_version)


GPU_DETERMINISM_FLAG = "--xla_gpu_deterministic_ops"
ADDED_XLA_FLAGS_VAR = "JAXPCAM_ADDED_XLA_FLAGS"  # ours, so a child process (or a restart) can tell them apart


def user_xla_flags(environ) -> str:
    """XLA_FLAGS without the items jaxpcam added (in this process or a parent)."""
    ours = set(environ.get(ADDED_XLA_FLAGS_VAR, "").split())
    return " ".join(item for item in environ.get("XLA_FLAGS", "").split() if item not in ours)


USER_XLA_FLAGS = user_xla_flags(os.environ)


def _set_gpu_determinism(deterministic: bool) -> None:
    os.environ["XLA_FLAGS"] = with_gpu_determinism(os.environ.get("XLA_FLAGS", ""), deterministic)
    os.environ[ADDED_XLA_FLAGS_VAR] = f"{GPU_DETERMINISM_FLAG}={str(deterministic).lower()}"


def xla_flag_value(xla_flags: str, flag: str) -> bool | None:
    """The boolean a flag has in XLA_FLAGS (the last setting wins; bare means true), None if unset."""
    value = None
    for item in xla_flags.split():
        name, _, setting = item.partition("=")
        if name == flag:
            value = setting.lower() not in ("false", "0") if setting else True
    return value


def with_gpu_determinism(xla_flags: str, deterministic: bool) -> str:
    """XLA_FLAGS with ``--xla_gpu_deterministic_ops`` set to ``deterministic`` (replacing ours).

    The flag (openxla docs/determinism.md) switches scatter, GEMMs and convolutions to
    deterministic implementations and implies no autotuning of them, so two compilations pick
    the same kernels; select-and-scatter then fails to compile (our max pooling avoids it).
    XLA:CPU is deterministic run to run without it and ignores it.
    """
    kept = [item for item in xla_flags.split() if item.partition("=")[0] != GPU_DETERMINISM_FLAG]
    return " ".join([*kept, f"{GPU_DETERMINISM_FLAG}={str(deterministic).lower()}"])


def apply_gpu_determinism() -> None:
    """On import: deterministic GPU ops, the default of training.deterministic, unless the user
    set the flag in XLA_FLAGS (then theirs wins over the config too)."""
    if xla_flag_value(USER_XLA_FLAGS, GPU_DETERMINISM_FLAG) is None:
        _set_gpu_determinism(True)


def _backends_started() -> bool:
    try:
        from jax._src import xla_bridge

        return bool(xla_bridge.backends_are_initialized())
    except (ImportError, AttributeError):  # a JAX without this private helper: assume not started
        return False


def apply_run_settings(training) -> dict:
    """Applies training.deterministic and training.matmul_precision, and returns what is in
    effect (for the provenance). XLA reads XLA_FLAGS once per process, when JAX starts its first
    backend: a change after that is refused rather than silently ignored."""
    import jax

    users_own = xla_flag_value(USER_XLA_FLAGS, GPU_DETERMINISM_FLAG) is not None
    in_effect = bool(xla_flag_value(os.environ.get("XLA_FLAGS", ""), GPU_DETERMINISM_FLAG))
    if not users_own and in_effect != training.deterministic:
        if _backends_started():
            raise UserError(
                f"config key training.deterministic: {training.deterministic} cannot take effect, JAX "
                "already started in this process with the other setting; run this config in a process of its own"
            )
        _set_gpu_determinism(training.deterministic)
    precision = None if training.matmul_precision == "default" else training.matmul_precision
    jax.config.update("jax_default_matmul_precision", precision)
    return {
        "deterministic_gpu_ops": bool(xla_flag_value(os.environ.get("XLA_FLAGS", ""), GPU_DETERMINISM_FLAG)),
        "matmul_precision": training.matmul_precision,
        "compilation_cache": compile_cache.in_effect(),
    }


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


HUGEPAGE_TUNABLE = "glibc.malloc.hugetlb=1"
THP_SETTING = Path("/sys/kernel/mm/transparent_hugepage/enabled")


def hugepage_environment(environ, libc: tuple[str, str], thp_setting: str) -> dict | None:
    """The environment to restart with so glibc uses huge pages, or None to run as is."""
    if "glibc.malloc.hugetlb" in environ.get("GLIBC_TUNABLES", "") or user_tuned_malloc(environ):
        return None
    name, version = libc
    if name != "glibc" or tuple(int(part) for part in version.split(".")[:2]) < (2, 35):
        return None  # the tunable came with glibc 2.35
    if "[always]" not in thp_setting and "[madvise]" not in thp_setting:
        return None
    tunables = ":".join(filter(None, [environ.get("GLIBC_TUNABLES", ""), HUGEPAGE_TUNABLE]))
    return {**environ, "GLIBC_TUNABLES": tunables}


def read_thp_setting() -> str:
    try:
        return THP_SETTING.read_text()
    except OSError:
        return ""


def restart_with_hugepages() -> None:
    """Re-execute this command once with glibc's huge-page tunable set; call before importing JAX."""
    environ = hugepage_environment(os.environ, platform.libc_ver(), read_thp_setting())
    if environ is not None:
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], environ)


def prepare_process(restart: bool = True) -> None:
    """What a command does first, before JAX starts: (optionally) re-execute once with glibc's
    huge-page tunable, then set the XLA flags, malloc settings and compilation cache above.
    Called where a command starts (training, sweep, evaluate, predict, benchmarks), never on
    import, so a notebook or a Grain worker that imports jaxpcam keeps its process as it was."""
    if restart:
        restart_with_hugepages()
    apply_cpu_defaults()
    apply_gpu_determinism()
    keep_freed_memory()
    warning = compile_cache.enable()
    if warning:
        log(warning)
