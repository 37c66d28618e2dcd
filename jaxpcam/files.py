"""Writing files so that a reader (a concurrent sweep task, a resumed run, another process)
never sees half of one, and a failed write (disk full, read-only, an interrupt) leaves no
temporary file behind. Below every other module: it imports none of them."""

import contextlib
import json
import math
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from jaxpcam.errors import UserError


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yields a temporary path next to ``path`` to write (with any library); on success it
    replaces ``path`` in one rename, on any failure it is removed and the error re-raised."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")  # writers never share one
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as err:
        try:
            tmp.unlink(missing_ok=True)
        except OSError as cleanup:  # the original error stays the one raised
            err.add_note(f"(could not remove {tmp} either: {cleanup})")
        raise


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
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
