"""One run per workdir: ``run.lock`` names its holder (host, pid, SLURM job) and is kept alive
by a heartbeat, so a second run stops at once and a killed run's lock does not block the next.

Shared file systems (NFS, Lustre, GPFS) are the normal case on clusters, where a requeued job
starts on another node and cannot ask whether a pid there still lives. So a lock is judged by:

- same host: alive while its pid runs (a dead pid frees it at once, and so does a pid that now
  belongs to a later process: the holder's start time is kept with it), however long it has
  not beaten (a process stopped with SIGSTOP or swapped out still holds it);
- another host: alive while its heartbeat moves. A lock whose file was not refreshed for
  ``stale_after`` seconds, measured with the file system's own clock (no clock skew between
  nodes), is stale; one refreshed more recently is watched until it beats again (alive: stop)
  or goes stale (take it over).

Creation is atomic (``os.link`` of a complete file, which NFS honours); a stale lock is renamed
away before a new one is created, so of two runs taking over the same stale lock one wins.
"""

import contextlib
import dataclasses
import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path

from jaxpcam.core.errors import RunInUse
from jaxpcam.core.reporting import log

LOCK_NAME = "run.lock"
HEARTBEAT_SECONDS = 5.0
STALE_AFTER_SECONDS = 30.0


@dataclasses.dataclass(frozen=True)
class Holder:
    host: str
    pid: int
    token: str  # tells apart two holders that reuse a host and pid
    started: str
    job: str | None = None  # SLURM_JOB_ID, when there is one
    pid_start: str | None = None  # the process's start time since boot (/proc), to spot a reused pid

    def describe(self) -> str:
        job = f", SLURM job {self.job}" if self.job else ""
        return f"host {self.host} pid {self.pid}{job}, since {self.started}"


def _process_start(pid: int) -> str | None:
    """Field 22 of /proc/<pid>/stat (start time in clock ticks since boot); None elsewhere."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _me() -> Holder:
    return Holder(
        host=socket.gethostname(),
        pid=os.getpid(),
        token=uuid.uuid4().hex,
        started=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        job=os.environ.get("SLURM_JOB_ID"),
        pid_start=_process_start(os.getpid()),
    )


def _tmp_path(path: Path, holder: Holder, beat: int) -> Path:
    return path.with_name(f".{path.name}.{holder.token}.{beat}.tmp")


def _write_new(path: Path, holder: Holder, beat: int) -> Path:
    tmp = _tmp_path(path, holder, beat)
    tmp.write_text(json.dumps({**dataclasses.asdict(holder), "beat": beat}) + "\n")
    return tmp


def _try_create(path: Path, holder: Holder) -> bool:
    tmp = _tmp_path(path, holder, 0)
    try:
        _write_new(path, holder, 0)
        os.link(tmp, path)  # atomic; fails if the lock exists
        return True
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)


def _read(path: Path) -> tuple[Holder | None, int, float] | None:
    """(holder or None if unreadable, beat, mtime); None if there is no lock."""
    try:
        text, mtime = path.read_text(), path.stat().st_mtime
    except FileNotFoundError:
        return None
    try:
        d = json.loads(text)
        beat = int(d.pop("beat"))
        holder = Holder(**d)
        pid_ok = isinstance(holder.pid, int) and not isinstance(holder.pid, bool) and 0 < holder.pid < 2**31
        if not (isinstance(holder.host, str) and pid_ok):
            raise TypeError("host or pid of the wrong type")
        return holder, beat, mtime
    except (ValueError, TypeError, KeyError, AttributeError):  # garbage or hand-edited: unreadable
        return None, -1, mtime


def _file_system_now(folder: Path) -> float:
    """The current time on the file system's clock: the mtime of a file written now."""
    probe = folder / f".{LOCK_NAME}.probe.{uuid.uuid4().hex}"
    probe.write_bytes(b"")
    try:
        return probe.stat().st_mtime
    finally:
        probe.unlink(missing_ok=True)


def _pid_runs(pid: int) -> bool:
    """Whether ``pid`` is a running process: a zombie (dead, not yet reaped, as a killed run's
    process stays in a container whose first process reaps nothing) holds nothing."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # no /proc (macOS), or the process just went
        return False
    return stat.rsplit(")", 1)[-1].split()[:1] == ["Z"]  # the state follows the (command name)


def _is_alive(path: Path, seen: tuple, stale_after: float, poll: float) -> bool:
    """Whether the holder of the lock ``seen`` (as read from ``path``) is still running."""
    holder, beat, mtime = seen
    if holder is not None and holder.host == socket.gethostname():
        reused = holder.pid_start is not None and _process_start(holder.pid) not in (None, holder.pid_start)
        return _pid_runs(holder.pid) and not reused
    if holder is None:
        log(f"{path} is unreadable; it counts as stale once it is {stale_after:.0f} s old")
    while True:
        age = _file_system_now(path.parent) - mtime
        if age >= stale_after:
            return False
        time.sleep(min(poll, stale_after - age))
        now = _read(path)
        if now is None or now[:2] != (holder, beat):
            return True  # it beat (or was released, or taken over): someone is alive


def _take_over(path: Path, seen: tuple) -> bool:
    """Moves the stale lock ``seen`` out of the way; False if it changed meanwhile."""
    aside = path.with_name(f".{path.name}.stale.{uuid.uuid4().hex}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return True  # someone else removed it; try to create
    moved = _read(aside)
    if moved is not None and moved[:2] != seen[:2]:  # a rival's fresh lock: put it back
        with contextlib.suppress(OSError):
            os.link(aside, path)
        aside.unlink(missing_ok=True)
        return False
    aside.unlink(missing_ok=True)
    return True


def acquire(workdir: Path, stale_after: float = STALE_AFTER_SECONDS, poll: float = 1.0) -> Holder:
    """Takes the workdir's lock or raises RunInUse naming who holds it."""
    path, me = workdir / LOCK_NAME, _me()
    while not _try_create(path, me):
        seen = _read(path)
        if seen is None:
            continue  # released between our two looks
        if _is_alive(path, seen, stale_after, poll):
            holder = seen[0]
            who = holder.describe() if holder else "a process whose lock file is unreadable"
            raise RunInUse(
                f"{workdir} is in use by another run ({who}); wait for it to end or choose another --workdir "
                f"(a lock whose holder has died is taken over at once on its own host, and from another host "
                f"{stale_after:.0f} s after its last heartbeat; see {path})",
                f"{who} holds {path}",
            )
        if _take_over(path, seen):
            gone = seen[0].describe() if seen[0] else "unreadable"
            log(f"took over the lock of a run that ended without releasing it ({gone})")
    return me


def in_use(workdir: Path, stale_after: float = STALE_AFTER_SECONDS) -> bool:
    """Whether a run holds the workdir's lock now, judged without waiting (for listings): on this
    host by its pid, from another host by a heartbeat younger than ``stale_after``."""
    path = workdir / LOCK_NAME
    seen = _read(path)
    if seen is None:
        return False
    holder, _, mtime = seen
    if holder is not None and holder.host == socket.gethostname():
        return _is_alive(path, seen, stale_after, poll=0.0)  # this host: the pid alone, no wait
    try:
        now = _file_system_now(workdir)
    except OSError:  # a folder we may not write to: this machine's clock instead
        now = time.time()
    return now - mtime < stale_after


def release(workdir: Path, me: Holder) -> None:
    path = workdir / LOCK_NAME
    seen = _read(path)
    if seen is not None and seen[0] == me:
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def held(workdir: Path, heartbeat: float = HEARTBEAT_SECONDS, stale_after: float = STALE_AFTER_SECONDS):
    """Holds the workdir's lock for the ``with`` block, refreshing it every ``heartbeat`` s."""
    me = acquire(workdir, stale_after, poll=heartbeat / 2)
    stop = threading.Event()

    def beat() -> None:
        path, count = workdir / LOCK_NAME, 0
        while not stop.wait(heartbeat):
            count += 1
            seen = _read(path)
            if seen is None or seen[0] != me:  # removed by hand, or taken over: nothing to refresh
                taker = seen[0].describe() if seen and seen[0] else "nobody"
                log(f"WARNING: {path} no longer names this run (now: {taker}); two runs may now write here")
                return
            tmp = _tmp_path(path, me, count)
            try:
                os.replace(_write_new(path, me, count), path)
            except OSError:  # a full disk must not kill the heartbeat; the next beat retries
                tmp.unlink(missing_ok=True)

    thread = threading.Thread(target=beat, name="workdir-lock-heartbeat", daemon=True)
    thread.start()
    try:
        yield me
    finally:
        stop.set()
        thread.join()
        with contextlib.suppress(OSError):
            release(workdir, me)
