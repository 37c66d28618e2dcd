"""Where results go: TensorBoard scalars, metrics.jsonl, config.json with provenance, the log."""

import contextlib
import datetime
import importlib.metadata
import os
import platform
import subprocess
import sys
from pathlib import Path

import jax
import ml_collections

from jaxpcam.core.errors import RunFailed
from jaxpcam.core.reporting import log
from jaxpcam.run.record import CONFIG_FILE, Health, file_record, write_record

_PACKAGES = (
    "jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "grain", "h5py", "numpy",
    "scikit-learn", "ml-collections", "tensorboardX",
)  # fmt: skip


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=Path(__file__).resolve().parent, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def provenance(data_files: list[Path], data_source: str) -> dict:
    commit = _git("rev-parse", "HEAD")
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
        "git": {"commit": commit, "dirty": bool(_git("status", "--porcelain")) if commit else None},
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
        "devices": [str(d) for d in jax.devices()],
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
        "data": {
            "source": data_source,
            "files": [file_record(p) for p in data_files],
        },
    }


@contextlib.contextmanager
def io_errors(workdir: Path):
    """A failed write to the run directory (full disk, read-only) ends the run in one line."""
    try:
        yield
    except OSError as err:
        where = err.filename or workdir  # the file, when the OS names it
        raise RunFailed(
            f"cannot write to {where}: {err.strerror or err}; earlier checkpoints in {workdir / 'checkpoints'} "
            "are intact"
        ) from None


def record_run_config(workdir: Path, config: ml_collections.ConfigDict, prov: dict, resumption: dict | None) -> None:
    """Writes config.json: the config in effect, the provenance of the run's first start, and
    one entry per resumption (the step it resumed from, the keys it changed with their earlier
    and new values, its own provenance), so the record of how the results were made stays true.

    ``resumption`` is None for a fresh start, else {"from_step": ..., "changed": {...}}."""
    earlier = write_record(workdir, config.to_dict(), prov, resumption)
    if resumption is not None and earlier is not Health.OK:
        log(f"WARNING: {workdir / CONFIG_FILE} was {earlier.value}; wrote a new one marked 'rebuilt' (its history "
            "of earlier starts is lost)")  # fmt: skip
