"""Checkpoint checksums, the workdir lock, and writes that fail at the start of a run."""

import errno
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import train_in_process
from jaxpcam.core.errors import RunFailed, UserError
from jaxpcam.run import lock as workdir_lock
from jaxpcam.run import record


@pytest.fixture(scope="module")
def finished_run(tiny_pcam, tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("integrity") / "run"
    train_in_process(workdir, tiny_pcam)
    return workdir


def _array_data_files(step_dir: Path) -> list[Path]:
    """The files that hold the arrays' values (the small ones are index nodes that a restore
    of the merged index does not read: damage there changes nothing that is restored)."""
    files = [p for p in (step_dir / "state").rglob("*") if p.is_file() and p.parent.name == "d"]
    return sorted(p for p in files if p.stat().st_size > 65536)


def test_every_overwrite_inside_the_array_data_is_caught_by_evaluate(finished_run, tmp_path):
    from jaxpcam.evaluation.loading import load_run

    workdir = tmp_path / "run"
    shutil.copytree(finished_run, workdir)
    latest = max(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
    assert load_run(workdir, "latest").step == latest  # intact: reads and verifies
    files = _array_data_files(workdir / "checkpoints" / str(latest))
    assert files
    tries = 0
    for path in files:
        original = path.read_bytes()
        for size in (8, 4096):  # same file size: only a checksum of the values can tell
            for fraction in (0.25, 0.5, 0.75):
                offset = int(len(original) * fraction)
                damaged = bytearray(original)
                damaged[offset : offset + size] = bytes((i * 37 + 11) % 256 for i in range(size))
                path.write_bytes(bytes(damaged))
                with pytest.raises(UserError, match=rf"checkpoint {latest} in .* is damaged"):
                    load_run(workdir, "latest")
                tries += 1
        path.write_bytes(original)
    assert tries >= 6


def test_a_garbled_metrics_item_is_one_line_for_evaluate_best(finished_run, tmp_path):
    from jaxpcam.evaluation.loading import load_run

    workdir = tmp_path / "run"
    shutil.copytree(finished_run, workdir)
    steps = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
    (workdir / "checkpoints" / str(steps[0]) / "metrics" / "metrics").write_text("{garbled")
    assert load_run(workdir, "latest").step == steps[-1]  # an old damaged checkpoint does not block
    with pytest.raises(UserError, match=rf"checkpoint {steps[0]} in .* is damaged \(its metrics item"):
        load_run(workdir, "best")


def _lock_file(folder: Path, host: str, pid: int, beat: int = 0, age: float = 0.0) -> Path:
    path = folder / workdir_lock.LOCK_NAME
    holder = {"host": host, "pid": pid, "token": "t", "started": "then", "job": "77", "beat": beat}
    path.write_text(json.dumps(holder))
    os.utime(path, (time.time() - age, time.time() - age))
    return path


def _dead_pid() -> int:
    """The pid of a process that has ended (no fork: JAX's threads make fork unsafe)."""
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(child.stdout)


def test_a_lock_of_a_dead_process_on_this_host_is_taken_over_at_once(tmp_path, lines):
    _lock_file(tmp_path, socket.gethostname(), _dead_pid())
    start = time.perf_counter()
    with workdir_lock.held(tmp_path):
        assert json.loads((tmp_path / workdir_lock.LOCK_NAME).read_text())["pid"] == os.getpid()
    assert time.perf_counter() - start < 2
    assert "took over the lock" in lines[0]
    assert not (tmp_path / workdir_lock.LOCK_NAME).exists()  # released
    assert [p.name for p in tmp_path.iterdir()] == []  # no temporary files left


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="zombies are read from /proc")
def test_a_lock_of_a_killed_process_not_yet_reaped_is_taken_over(tmp_path, lines):
    # A run killed in a container whose first process reaps nothing stays a zombie: dead, with a pid.
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 30
    while Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    try:
        _lock_file(tmp_path, socket.gethostname(), child.pid)
        with workdir_lock.held(tmp_path):
            assert json.loads((tmp_path / workdir_lock.LOCK_NAME).read_text())["pid"] == os.getpid()
        assert "took over the lock" in lines[0]
    finally:
        child.wait()


def test_a_lock_on_this_host_whose_process_runs_refuses(tmp_path):
    _lock_file(tmp_path, socket.gethostname(), os.getppid())
    with pytest.raises(UserError, match=rf"in use by another run \(host {socket.gethostname()} pid {os.getppid()}"):
        workdir_lock.acquire(tmp_path)


def test_a_lock_from_another_host_that_stopped_beating_is_taken_over(tmp_path):
    _lock_file(tmp_path, "other-node", 12345, age=5.0)
    with workdir_lock.held(tmp_path, heartbeat=0.1, stale_after=2.0):
        assert json.loads((tmp_path / workdir_lock.LOCK_NAME).read_text())["host"] == socket.gethostname()


def test_a_lock_from_another_host_that_beats_refuses(tmp_path):
    path = _lock_file(tmp_path, "other-node", 12345, beat=0)
    stop = threading.Event()

    def beat():  # the other node's heartbeat
        count = 0
        while not stop.wait(0.2):
            count += 1
            _lock_file(tmp_path, "other-node", 12345, beat=count)

    thread = threading.Thread(target=beat)
    thread.start()
    try:
        start = time.perf_counter()
        with pytest.raises(UserError, match="host other-node pid 12345, SLURM job 77"):
            workdir_lock.acquire(tmp_path, stale_after=5.0, poll=0.1)
        assert time.perf_counter() - start < 2  # decided at its next beat, not after stale_after
    finally:
        stop.set()
        thread.join()
    assert json.loads(path.read_text())["host"] == "other-node"  # untouched


def test_the_heartbeat_refreshes_the_lock(tmp_path):
    with workdir_lock.held(tmp_path, heartbeat=0.05):
        first = json.loads((tmp_path / workdir_lock.LOCK_NAME).read_text())["beat"]
        time.sleep(0.3)
        later = json.loads((tmp_path / workdir_lock.LOCK_NAME).read_text())["beat"]
    assert later > first


def _full_disk(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_when_writing_config_json_is_one_line_and_leaves_the_record_intact(
    finished_run, tmp_path, monkeypatch
):
    from jaxpcam.config import base_config
    from jaxpcam.training.loop import train_and_evaluate

    workdir = tmp_path / "run"
    shutil.copytree(finished_run, workdir)
    before = {name: (workdir / name).read_bytes() for name in ("config.json", "metrics.jsonl")}
    run_config = json.loads(before["config.json"])["config"]
    config = base_config()
    config.update_from_flattened_dict(
        {
            "data.dir": run_config["data"]["dir"],
            "data.batch_size": 32,
            "data.eval_batch_size": 40,
            "model.hidden_units": (16,),
            "training.epochs": 3,
            "training.log_every_steps": 3,
        }
    )
    monkeypatch.setattr(record, "write_json_atomic", lambda path, payload: _full_disk())
    with pytest.raises(RunFailed, match=r"^cannot write to .*: No space left on device; earlier checkpoints"):
        train_and_evaluate(config, workdir)
    assert {name: (workdir / name).read_bytes() for name in before} == before
    assert not list(workdir.glob(".*.tmp")) and not (workdir / workdir_lock.LOCK_NAME).exists()


def test_a_live_process_on_this_host_keeps_its_lock_however_long_it_did_not_beat(tmp_path):
    _lock_file(tmp_path, socket.gethostname(), os.getppid(), age=3600.0)  # e.g. stopped with SIGSTOP
    with pytest.raises(UserError, match="in use by another run"):
        workdir_lock.acquire(tmp_path, stale_after=1.0)


def test_a_lock_whose_pid_now_belongs_to_a_later_process_is_taken_over(tmp_path, lines):
    path = _lock_file(tmp_path, socket.gethostname(), os.getppid())
    holder = json.loads(path.read_text())
    path.write_text(json.dumps({**holder, "pid_start": "1"}))  # started at boot: not the running parent
    with workdir_lock.held(tmp_path):
        pass
    assert "took over the lock" in lines[0]


def test_an_unreadable_lock_is_said_and_taken_over_once_stale(tmp_path, lines):
    (tmp_path / workdir_lock.LOCK_NAME).write_text("5")
    with workdir_lock.held(tmp_path, heartbeat=0.1, stale_after=0.5):
        pass
    assert "is unreadable" in lines[0] and "took over the lock" in lines[1]


def test_a_checkpoint_without_its_config_or_its_checksums_is_damaged(finished_run, tmp_path):
    from jaxpcam.evaluation.loading import load_run

    workdir = tmp_path / "run"
    shutil.copytree(finished_run, workdir)
    latest = max(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
    shutil.rmtree(workdir / "checkpoints" / str(latest) / "checksums")
    with pytest.raises(UserError, match=rf"checkpoint {latest} .* damaged \(its checksums item is missing\)"):
        load_run(workdir, "latest")
    shutil.rmtree(workdir / "checkpoints" / str(latest) / "data")  # nor by deleting what says so
    with pytest.raises(UserError, match=rf"checkpoint {latest} .* damaged \(its data item is missing\)"):
        load_run(workdir, "latest")
    shutil.rmtree(workdir / "checkpoints" / str(latest) / "config")
    with pytest.raises(UserError, match=rf"checkpoint {latest} .* damaged \(.*no config item\)"):
        load_run(workdir, "latest")


def test_a_failed_checkpoint_write_frees_its_partial_folder(tmp_path):
    from jaxpcam.training import checkpoint

    partial = tmp_path / "checkpoints" / "9.orbax-checkpoint-tmp-123"
    partial.mkdir(parents=True)
    failed = pytest.raises(RunFailed, match=r"writing a checkpoint .* failed: .*No space left on device")
    with failed, checkpoint.write_errors(tmp_path):
        raise ValueError("RESOURCE_EXHAUSTED: No space left on device")
    assert not partial.exists()


def test_a_full_disk_during_evaluation_is_one_line_and_keeps_earlier_results(finished_run, tmp_path, monkeypatch):
    from jaxpcam.evaluation import evaluate as evaluate_lib

    workdir = tmp_path / "run"
    shutil.copytree(finished_run, workdir)
    evaluate_lib.evaluate_run(workdir, evaluate_lib.EvalOptions())
    before = (workdir / "eval" / "valid" / "metrics.json").read_bytes()
    monkeypatch.setattr(evaluate_lib, "write_predictions_csv", _full_disk)
    with pytest.raises(UserError, match=r"cannot write the evaluation into .*: No space left on device"):
        evaluate_lib.evaluate_run(workdir, evaluate_lib.EvalOptions())
    assert (workdir / "eval" / "valid" / "metrics.json").read_bytes() == before
    assert sorted(p.name for p in (workdir / "eval").iterdir()) == [
        ".jaxpcam-writers.lock", "threshold.json", "thresholds", "valid"
    ]  # no partial folder left behind  # fmt: skip


def test_a_run_whose_lock_is_taken_over_says_so(tmp_path, lines):
    with workdir_lock.held(tmp_path, heartbeat=0.05):
        _lock_file(tmp_path, "other-node", 12345)  # someone else's lock now
        time.sleep(0.3)
    assert any("no longer names this run (now: host other-node pid 12345" in line for line in lines)
    assert json.loads((tmp_path / workdir_lock.LOCK_NAME).read_text())["host"] == "other-node"  # not removed
