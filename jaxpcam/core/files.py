"""Writing files so that a reader (a concurrent sweep task, a resumed run, another process)
never sees half of one, and a failed write (disk full, read-only, an interrupt) leaves no
temporary file behind. Below every other module: it imports none of them."""

import contextlib
import errno
import json
import math
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from jaxpcam.core.errors import UserError


def user_cache_dir() -> Path:
    """jaxpcam's folder in the user's cache: $XDG_CACHE_HOME/jaxpcam, else ~/.cache/jaxpcam."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "jaxpcam"


@contextlib.contextmanager
def atomic_path(path: Path, replace: bool = True) -> Iterator[Path]:
    """Yields a temporary path next to ``path`` to write (with any library); on success it
    replaces ``path`` in one rename (without ``replace``: FileExistsError if ``path`` exists by
    then, and it stays as it was), on any failure it is removed and the error re-raised."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")  # writers never share one
    try:
        yield tmp
        if replace:
            os.replace(tmp, path)
        else:
            _place_new(tmp, path)
    except BaseException as err:
        try:
            tmp.unlink(missing_ok=True)
        except OSError as cleanup:  # the original error stays the one raised
            err.add_note(f"(could not remove {tmp} either: {cleanup})")
        raise


def _place_new(tmp: Path, path: Path) -> None:
    """Moves the written ``tmp`` to ``path`` unless something is there by now: a hard link fails
    on an existing name, in one step. Where the file system has no hard links, a check first."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError:  # no hard links here (some network or FUSE file systems)
        if os.path.lexists(path):
            raise FileExistsError(errno.EEXIST, "File exists", str(path)) from None
        os.replace(tmp, path)
        return
    tmp.unlink()


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_output_text(path: Path, text: str, replace: bool) -> None:
    """Writes a file the user named: whole or not at all (a temporary file, then a rename), and
    over an existing file only with ``replace`` (else FileExistsError, the file untouched). An
    existing device or pipe (/dev/null, a FIFO) is written into as it is, and a link to a file
    (/dev/stdout redirected to one) replaces the file it points to: renaming over either would
    put a regular file in its place."""
    path = Path(path)
    if path.exists() and not path.is_file() and not path.is_dir():
        with open(path, "w") as stream:
            stream.write(text)
        return
    if path.is_symlink() and path.exists():
        path = Path(os.path.realpath(path))
    with atomic_path(path, replace) as tmp:
        tmp.write_text(text)


def write_json_atomic(path: Path, payload: dict) -> None:
    write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=False) + "\n")


def json_ready(value):
    """NaN and infinities become None (JSON has no such numbers), recursively; numpy scalars
    become Python numbers."""
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def read_jsonl(path: Path) -> list[dict]:
    """The records (JSON objects with an ``epoch``) of a JSON-lines file such as metrics.jsonl;
    none if it does not exist. A damaged line is a UserError naming the file and the line."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict) or not isinstance(record.get("epoch"), int):
            raise UserError(f"{path}, line {number}: not a metrics record (damaged or edited by hand?)")
        records.append(record)
    return records
