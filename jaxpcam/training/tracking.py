"""Where results go: TensorBoard scalars, metrics.jsonl, config.json with provenance, the log."""

import contextlib
import datetime
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import jax
import ml_collections

from jaxpcam.core.errors import RunFailed
from jaxpcam.core.files import json_ready, write_json_atomic, write_text_atomic
from jaxpcam.core.reporting import log
from jaxpcam.data.pcam import file_fingerprint
from jaxpcam.run.record import CONFIG_FILE, METRICS_FILE, read_metrics  # noqa: F401 (read_metrics re-exported)

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
            "files": [
                {
                    "name": p.name,
                    "path": str(p.absolute()),
                    "bytes": p.stat().st_size,
                    "fingerprint": file_fingerprint(p),
                }
                for p in data_files
            ],
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
    path = workdir / CONFIG_FILE
    earlier = None
    if resumption is not None and path.is_file():
        try:
            earlier = json.loads(path.read_text())
        except (OSError, ValueError):
            log(f"WARNING: {path} is unreadable; writing a new one (its history of resumptions is lost)")
    if not isinstance(earlier, dict) or "provenance" not in earlier:
        payload = {"config": config.to_dict(), "provenance": prov, "resumptions": []}
    else:
        entry = {**resumption, "provenance": prov}
        payload = {**earlier, "config": config.to_dict(), "resumptions": [*earlier.get("resumptions", []), entry]}
    write_json_atomic(path, payload)


def append_metrics(workdir: Path, record: dict) -> None:
    """One epoch's line of metrics.jsonl (process 0 only)."""
    with open(workdir / METRICS_FILE, "a") as f:
        f.write(json.dumps(json_ready(record)) + "\n")


def rewrite_metrics(workdir: Path, records) -> None:
    """metrics.jsonl as exactly ``records`` (a resumed checkpoint's history of finished epochs)."""
    write_text_atomic(workdir / METRICS_FILE, "".join(json.dumps(r) + "\n" for r in records))
