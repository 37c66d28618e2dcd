"""JAX's persistent compilation cache, on by default: a command that compiles a program an
earlier command compiled (same program, XLA flags, devices and JAX version) loads it from disk.

Where: ``$XDG_CACHE_HOME/jaxpcam/xla-<machine>`` (``~/.cache/jaxpcam/...``). The environment
variable JAXPCAM_COMPILE_CACHE moves it (``<dir>/xla-<machine>``) or, set to ``off`` (or ``0``,
``false``, ``no``, ``none``), disables it; a JAX_COMPILATION_CACHE_DIR the user set wins and
jaxpcam changes nothing. An environment variable and not a config key: the cache is the
process's, set before JAX starts, and a run's results never depend on it (a loaded program is
the compiled one).

``<machine>`` names the OS, the architecture, the jaxlib version and a digest of the CPU's
feature flags: XLA compiles CPU programs for the host's features, and a machine without one of
them rejects the program ("Target machine feature ... not supported") and compiles again, so
cluster nodes of different CPU generations sharing a home folder keep apart.

Small programs too: JAX skips programs that compiled in under a second or are small unless
jax_persistent_cache_min_compile_time_secs is 0 and jax_persistent_cache_min_entry_size_bytes is
-1 (jaxpcam sets both unless the user did), and on CPU most of ours compile in under a second.

Trusted code: the cache holds machine code the process runs. The folder is created 0o700; one
owned by another user or writable by group or others is refused (a warning, no cache).

Several processes (sweeps, parallel runs): JAX (0.12, ``jax/_src/lru_cache.py``) writes an
entry in one ``write_bytes`` under its final name, never overwrites one, and takes no lock
without a size limit (which needs the filelock package). A process that reads an entry while
another writes it, or one a killed process left truncated, fails to decompress it and compiles;
nothing wrong is ever run. JAX would warn at every such program, in every later run, since it
never replaces an entry: jaxpcam says it once per process and removes that program's entries,
so the fresh compile is written in their place (at worst a writer's entry goes too: a cache
miss). A folder jaxpcam cannot write to (a read-only mount) is not used: one warning line.
"""

import glob
import hashlib
import os
import platform
import re
import stat
import sys
import tempfile
import warnings
from importlib import metadata
from pathlib import Path

from jaxpcam.core.files import user_cache_dir
from jaxpcam.core.reporting import log

SETTING_VAR = "JAXPCAM_COMPILE_CACHE"
JAX_DIR_OPTION = "jax_compilation_cache_dir"  # each JAX option also reads the variable of its name in capitals
CACHE_EVERYTHING = {"jax_persistent_cache_min_compile_time_secs": 0.0, "jax_persistent_cache_min_entry_size_bytes": -1}


def cpu_features() -> str:
    """The CPU's feature flags as the kernel lists them (Linux), else what platform says."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                name, _, value = line.partition(":")
                if name.strip() in ("flags", "Features"):
                    return " ".join(sorted(value.split()))
    except OSError:
        pass
    return platform.processor()


def machine_key(jaxlib_version: str, features: str) -> str:
    digest = hashlib.sha256(features.encode()).hexdigest()[:10]
    return f"xla-{sys.platform}-{platform.machine()}-jaxlib{jaxlib_version}-cpu{digest}"


OFF = ("off", "0", "false", "no", "none")  # what a user may write to turn it off


def cache_folder(environ) -> Path | None:
    """The folder jaxpcam's cache goes in (absolute), None when JAXPCAM_COMPILE_CACHE is off or
    the user set JAX's own variable."""
    setting = environ.get(SETTING_VAR, "").strip()
    if setting.lower() in OFF or environ.get(JAX_DIR_OPTION.upper()):
        return None
    try:
        jaxlib_version = metadata.version("jaxlib")
    except metadata.PackageNotFoundError:
        return None
    root = Path(setting).expanduser().absolute() if setting else user_cache_dir()
    return root / machine_key(jaxlib_version, cpu_features())


def private_folder_problem(folder: Path) -> str | None:
    """Creates ``folder`` (0o700) if missing; why it must not hold the cache, or None if fine."""
    if any(p.exists() and not p.is_dir() for p in (folder, *folder.parents)):
        return "not a folder"
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        folder.mkdir(mode=0o700, exist_ok=True)
        info = folder.stat()
    except OSError as err:
        return f"cannot create it: {err.strerror or err}"
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        return "another user owns it"
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return "others can write to it (it holds code this process runs)"
    try:  # a read-only file system or mount: JAX would warn at every program it compiles
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as err:
        return f"cannot write to it: {err.strerror or err}"
    return None


def jax_options(environ) -> tuple[dict, str | None]:
    """The JAX options that turn jaxpcam's cache on (none if it is off), and a warning or None."""
    folder = cache_folder(environ)
    if folder is None:
        return {}, None
    problem = private_folder_problem(folder)
    if problem:
        return {}, f"WARNING: not using the compilation cache {folder}: {problem} ({SETTING_VAR}=off silences this)"
    return {
        JAX_DIR_OPTION: str(folder),
        **{k: v for k, v in CACHE_EVERYTHING.items() if k.upper() not in environ},
    }, None


def enable() -> str | None:
    """Turns the cache on through JAX's environment variables (which JAX reads when imported,
    and child processes inherit), and in JAX's config if it is imported; returns a warning."""
    options, warning = jax_options(os.environ)
    os.environ.update({name.upper(): str(value) for name, value in options.items()})
    if options and "jax" in sys.modules:
        import jax

        for name, value in options.items():
            jax.config.update(name, value)
    if options and not getattr(warnings.showwarning, "jaxpcam_cache", False):  # once per process
        warnings.showwarning = _cache_warnings_shown_once(Path(options[JAX_DIR_OPTION]), warnings.showwarning)
    return warning


# JAX warns once per program when an entry does not read (a truncated or garbled file: it
# compiles instead) or does not write (a full disk), and never replaces a bad entry.
_JAX_CACHE_WARNING = re.compile(r"Error (reading|writing) persistent compilation cache entry for '([^']+)': (.*)")


def _cache_warnings_shown_once(folder: Path, show_other):
    """A ``warnings.showwarning`` that turns JAX's cache warnings into one line per process and
    kind, and removes the entries that did not read, so the program's fresh compile takes their
    place (JAX writes an entry only where none is). Other warnings go to ``show_other``."""
    said = set()

    def show(message, category, filename, lineno, file=None, line=None):
        found = _JAX_CACHE_WARNING.match(str(message))
        if found is None:
            return show_other(message, category, filename, lineno, file, line)
        kind, program, reason = found.groups()
        if kind == "reading":
            for entry in folder.glob(f"{glob.escape(program)}-*"):
                entry.unlink(missing_ok=True)
        if kind not in said:
            said.add(kind)
            what = "an entry that does not read" if kind == "reading" else "an entry it cannot write"
            done = "removed such entries; compiled anew" if kind == "reading" else "compiled as usual"
            log(f"WARNING: the compilation cache {folder} has {what} ({program}: {reason[:120]}): {done}")

    show.jaxpcam_cache = True
    return show


def in_effect() -> str | None:
    """The persistent cache folder JAX uses in this process (for the provenance), None if off."""
    import jax

    return (jax.config.jax_compilation_cache_dir or None) if jax.config.jax_enable_compilation_cache else None
