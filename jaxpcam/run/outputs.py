"""The one way a command writes its results into a run directory or beside runs (evaluate's
``eval/<split>/``, export's folder, report's ``report.md``/``.csv``, the sweep summary), so that
two commands at once never lose a result and no command replaces a file it did not write.

- **Unique temporary names.** A folder is written whole into ``.<name>.partial-<unique>`` next to
  its place, then swapped in (``swap_in``): the earlier folder is renamed aside under a unique
  name, the new one renamed into place, the earlier one removed. A failure between the two renames
  puts the earlier one back. A file goes through core/files.py's atomic write (unique names too).
- **One writers' lock per folder** (``.jaxpcam-writers.lock``, an flock): the check of what is in
  the way and the swap happen under it, so two swaps never interleave; writing the new results
  (the slow part) happens outside it. The later of two commands wins; both said what they wrote.
- **A manifest of what a command wrote.** Each folder a command fills holds ``.jaxpcam-written.json``
  (file name -> SHA-256, the command); beside loose files (report.md) the folder's manifest lists
  them. A file counts as the command's own only while its bytes are the ones it wrote: a file
  someone else put there, or edited since, is never deleted or replaced: the command refuses in
  one line (``NotOurs``). Folders written before manifests existed count as a command's own when
  they hold only the names it writes (``legacy``).
"""

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from jaxpcam.core.errors import UserError
from jaxpcam.core.files import atomic_path, write_json_atomic

MANIFEST = ".jaxpcam-written.json"
LOCK_FILE = ".jaxpcam-writers.lock"
LEFTOVER_SECONDS = 600.0


class NotOurs(UserError):
    """Something in the way holds files the command cannot prove it wrote."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def writers_lock(folder: Path) -> Iterator[None]:
    """Exclusive among jaxpcam's writers into ``folder`` for the ``with`` block (waits its turn:
    what runs under it is a few renames)."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def read_manifest(folder: Path) -> dict:
    try:
        record = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}
    files = record.get("files") if isinstance(record, dict) else None
    return files if isinstance(files, dict) else {}


def record_written(folder: Path, names: list[str], command: str, replace: bool = False) -> None:
    """Adds ``names`` (files in ``folder``, as they are now) to its manifest (``replace``: the
    manifest lists only them). Call it under the folder's writers' lock, or on a private folder."""
    files = {} if replace else read_manifest(folder)
    files.update({name: _sha256(folder / name) for name in names})
    write_json_atomic(folder / MANIFEST, {"written_by": command, "files": files})


def _first_line(path: Path) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.readline()
    except OSError:
        return ""


def is_ours(path: Path, legacy_head: str | None = None) -> bool:
    """Whether ``path`` holds the bytes a jaxpcam command wrote there (its folder's manifest). A
    file the manifest does not name, from before manifests, counts when it starts with
    ``legacy_head`` (the first line that command writes)."""
    expected = read_manifest(path.parent).get(path.name)
    if expected is None:
        return bool(legacy_head) and path.is_file() and _first_line(path).startswith(legacy_head)
    return path.is_file() and _sha256(path) == expected


def foreign_files(folder: Path, legacy: Callable[[str], bool] | None = None) -> list[str]:
    """The files in ``folder`` (sorted, sub-folders included) that no manifest proves ours. A
    folder without a manifest, from before manifests: every name ``legacy`` does not accept."""
    if not folder.is_dir():
        return [folder.name] if os.path.lexists(folder) else []  # a file (or link) in the folder's place
    files = read_manifest(folder)
    names = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if not p.is_dir())
    names = [n for n in names if n not in (MANIFEST, LOCK_FILE)]
    if not files and not (folder / MANIFEST).exists():
        return [n for n in names if legacy is None or not legacy(n)]
    return [n for n in names if files.get(n) != _sha256(folder / n)]


def _pid_runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _remove_leftovers(final: Path) -> None:
    """Temporary folders next to ``final`` left by a killed writer: its pid gone here, and
    untouched for LEFTOVER_SECONDS (a writer on another host of a shared file system has its own
    pids: it is given time)."""
    for path in final.parent.glob(f".{final.name}.*-*-*"):
        kind, _, rest = path.name[len(final.name) + 2 :].partition("-")
        pid = rest.split("-")[0]
        if kind in ("partial", "old") and pid.isdigit() and not _pid_runs(int(pid)):
            with contextlib.suppress(OSError):
                if time.time() - path.stat().st_mtime > LEFTOVER_SECONDS:
                    shutil.rmtree(path, ignore_errors=True)


def partial_folder(final: Path) -> Path:
    """A fresh, private folder next to ``final`` to write a new version into."""
    final.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(final)
    partial = final.with_name(f".{final.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    partial.mkdir()
    return partial


def _refusal(final: Path, foreign: list[str]) -> NotOurs:
    shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
    return NotOurs(f"{final} holds files jaxpcam did not write ({shown}): left as they are, nothing replaced; "
                   "move them away or choose another place")  # fmt: skip


def swap_in(
    partial: Path, final: Path, command: str, legacy: Callable[[str], bool] | None = None,
    check: Callable[[], None] | None = None,
) -> None:  # fmt: skip
    """Puts the fully written ``partial`` in place of ``final``, which is replaced only when every
    file in it is provably a jaxpcam command's (else NotOurs, ``partial`` removed) and ``check``
    (called under the lock: what is there now) raises nothing. The earlier version stays whole
    until the new one is in place."""
    try:
        record_written(partial, sorted(str(p.relative_to(partial)) for p in partial.rglob("*") if p.is_file()),
                       command, replace=True)  # fmt: skip
        with writers_lock(final.parent):
            if check is not None:
                check()
            foreign = foreign_files(final, legacy)
            if foreign:
                raise _refusal(final, foreign)
            aside = final.with_name(f".{final.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}")
            if os.path.lexists(final):
                final.rename(aside)
            try:
                partial.rename(final)
            except OSError:
                if aside.exists():
                    aside.rename(final)  # the earlier version goes back
                raise
        shutil.rmtree(aside, ignore_errors=True)
    finally:
        shutil.rmtree(partial, ignore_errors=True)


OVERWRITE_REMEDY = "pass --overwrite to replace it, or choose another place"


def check_owned(path: Path, legacy_head: str | None = None, remedy: str = OVERWRITE_REMEDY) -> None:
    """NotOurs when ``path`` exists and is not provably a jaxpcam command's output, unchanged;
    ``remedy``: what the asking command offers instead (not every command has --overwrite)."""
    if path.exists() and not is_ours(path, legacy_head):
        raise NotOurs(f"{path} exists and is not a file jaxpcam wrote there (yours, or edited since): left as it "
                      f"is; {remedy}")  # fmt: skip


def write_owned_text(
    path: Path, text: str, command: str, overwrite: bool = False, legacy_head: str | None = None,
    remedy: str = OVERWRITE_REMEDY,
):  # fmt: skip
    """Writes ``path`` whole (a unique temporary name, then a rename) and lists it in its folder's
    manifest. An existing file is replaced only when it is provably ``command``'s output
    unchanged since, or with ``overwrite`` (the user asked); else NotOurs, the file untouched."""
    path = Path(path)
    with writers_lock(path.parent):
        if not overwrite:
            check_owned(path, legacy_head, remedy)
        with atomic_path(path) as tmp:
            tmp.write_text(text)
        record_written(path.parent, [path.name], command)
