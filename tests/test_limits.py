"""Limits met before or during a command: memory, evaluation batches, a full disk, signals at any
moment, a slow step's stop; and a rebuilt run record that says so."""

import json
import os
import signal
import subprocess
import sys
import time
import types

import pytest

from conftest import REPO, train_in_process
from jaxpcam import cli
from jaxpcam.core.errors import Interrupted, RunFailed, UserError
from jaxpcam.core.exits import exit_code, signals_as_interrupts
from jaxpcam.data.pipeline import eval_batch_size
from jaxpcam.run.record import read_record, write_record
from jaxpcam.training import memory, preemption


def test_a_signal_at_any_moment_is_one_line(capsys):
    before = signal.getsignal(signal.SIGTERM)

    def start_up():
        os.kill(os.getpid(), signal.SIGTERM)  # e.g. while the data opens, before training's own handler
        time.sleep(5)

    with signals_as_interrupts():
        assert exit_code(start_up) == 128 + signal.SIGTERM
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("stopped on SIGTERM before the command finished")

    def ctrl_c():
        raise KeyboardInterrupt

    assert cli.run_command(ctrl_c) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("stopped on SIGINT")
    assert signal.getsignal(signal.SIGTERM) is before  # put back afterwards


OUT_OF_MEMORY = """
from jaxpcam.core.exits import exit_code
class XlaRuntimeError(Exception):  # as jaxlib names it
    pass
def allocate():
    raise XlaRuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating 4398046511104 bytes.\\nmore\\nlines")
exit_code(allocate)
"""


def test_an_allocation_that_fails_is_one_line():
    result = subprocess.run([sys.executable, "-c", OUT_OF_MEMORY], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "run failed: out of memory: RESOURCE_EXHAUSTED: Out of memory allocating 4398046511104 bytes.; lower"
    ), result.stderr

    class OtherError(Exception):
        pass

    def other():
        raise OtherError("INTERNAL: something else")

    with pytest.raises(OtherError):  # anything else still shows itself
        exit_code(other)


def test_a_run_that_cannot_fit_is_refused_before_allocating(tiny_pcam, tmp_path, monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda device: (3 * 2**20, "host memory (RAM available)"))
    with pytest.raises(UserError, match=r"needs at least 0\.\d\d GiB per device \(train state .* GiB of host memory"):
        train_in_process(tmp_path / "run", tiny_pcam)
    assert not (tmp_path / "run" / "checkpoints").exists()
    needed = memory.needed_bytes(_abstract_state(), 32, 32, 40, (96, 96, 3))
    assert needed["largest batch"] == max(32 + 4 * 32, 5 * 40) * 96 * 96 * 3


def test_the_refusal_divides_host_memory_among_cpu_devices_as_placement_does(monkeypatch):
    """One rule for "what is free": the RAM is shared by the CPU devices of a data-parallel run."""
    monkeypatch.setattr(memory, "available_bytes", lambda device: (4 * memory.GIB, "host memory (RAM available)"))
    cpu = types.SimpleNamespace(platform="cpu")
    needed = {"train state": 3 * memory.GIB}
    assert memory.refusal(needed, [cpu]) is None
    refused = memory.refusal(needed, [cpu, cpu])
    assert refused is not None and "2.00 GiB of host memory (RAM available), shared by 2 devices" in str(refused)
    assert memory.free_device_memory([cpu, cpu]) == 2 * memory.GIB


def _abstract_state():
    import jax

    from conftest import tiny_state

    return jax.eval_shape(tiny_state)


def test_evaluation_batches_never_exceed_the_split(tiny_pcam, tmp_path):
    assert eval_batch_size(2**20, 96) == 96 and eval_batch_size(40, 96) == 40 and eval_batch_size(8, 0) == 1
    lines = train_in_process(tmp_path / "run", tiny_pcam, **{"data.eval_batch_size": 2**20, "training.epochs": 1})
    assert any("epoch 1 done" in line for line in lines)


@pytest.fixture
def small_disk(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_disk_that_fills_while_checkpointing_leaves_no_temporary_checkpoint(tiny_pcam, small_disk):
    workdir = small_disk / "run"  # one checkpoint of this MLP (state and Adam moments) takes 5.3 MB of 8
    with pytest.raises((RunFailed, UserError)) as err:
        train_in_process(workdir, tiny_pcam)
    assert "No space left on device" in str(err.value) or "space" in str(err.value).lower(), err.value
    assert not list((workdir / "checkpoints").glob("*orbax-checkpoint-tmp*"))
    assert [p.name for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()] == ["8"]


def test_the_host_waits_for_slow_steps_one_at_a_time():
    waited, ahead = [], preemption.RunAhead(wait=lambda outputs: waited.append(outputs))
    for step in range(3):
        ahead.dispatched(step)
    assert waited == [0, 1]  # fast steps: the previous one is waited for, one stays in flight
    ahead.step_seconds = preemption.SLOW_STEP_SECONDS
    ahead.dispatched(3)
    assert waited == [0, 1, 2, 3] and not ahead.in_flight  # slow steps: none left in flight


def test_processes_agree_on_a_stop_about_every_few_seconds_whatever_the_step_time(monkeypatch):
    gathered = []

    def agree_on_stop(number, seconds):
        gathered.append(seconds)
        return max(number, other[0]), slowest[0]

    monkeypatch.setattr(preemption, "agree_on_stop", agree_on_stop)
    stop, slowest, other = preemption.StopRequest(step=0), [14.0], [0]
    assert stop.agreement_due(1) and not stop.agree()
    assert stop.agreement_due(2)  # 14 s steps: every step
    slowest[0] = 0.01
    stop.agree()
    assert not stop.agreement_due(3) and stop.agreement_due(2 + int(preemption.AGREE_SECONDS / 0.01))
    other[0] = int(signal.SIGTERM)  # the signal reached another process only
    assert stop.agree() and stop.signal_name == "SIGTERM"


def test_a_signal_sent_twice_at_once_is_one_stop_request(monkeypatch):
    # GNU timeout signals its child, then its process group: two SIGTERMs in a moment. They are one
    # request to checkpoint and stop; one sent after SAME_REQUEST_SECONDS does what it did before.
    before = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: before.append(signum))
    monkeypatch.setattr(preemption, "SAME_REQUEST_SECONDS", 0.3)
    try:
        with preemption.StopRequest() as stop:
            for _ in range(2):
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.02)  # each one handled before the next is sent
            assert stop.requested and stop.signal_name == "SIGTERM" and before == []
            time.sleep(0.3)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.02)
            assert before == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_rebuilt_record_says_so_and_keeps_no_borrowed_provenance(tmp_path):
    (tmp_path / "config.json").write_text("{garbled")
    write_record(tmp_path, {"seed": 1}, {"git": "abc"}, {"from_step": 16, "changed": {}})
    raw = json.loads((tmp_path / "config.json").read_text())
    assert raw["provenance"] is None and raw["rebuilt"]["from_step"] == 16 and raw["rebuilt"]["earlier"] == "damaged"
    assert raw["resumptions"] == [{"from_step": 16, "changed": {}, "provenance": {"git": "abc"}}]
    write_record(tmp_path, {"seed": 1}, {"git": "def"}, {"from_step": 24, "changed": {}})  # resumed again
    record = read_record(tmp_path)
    assert record.rebuilt and [r["from_step"] for r in record.resumptions] == [16, 24]
    assert [s["git"] for s in record.starts] == ["abc", "def"]


class _SignalledWhileCollected:
    """Sends SIGTERM while Python finalizes it: the handler then raises inside __del__, where
    Python prints the exception and goes on (as in jax's garbage-collection callback)."""

    def __del__(self):
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(10**6):  # the handler runs here, inside __del__
            pass


def test_a_signal_that_lands_where_python_ignores_exceptions_still_stops_the_command():
    with pytest.raises(Interrupted) as stopped, signals_as_interrupts():
        _SignalledWhileCollected()
        time.sleep(5)  # before the fix: the Interrupted was printed and lost, the command went on
    assert stopped.value.exit_code == 128 + signal.SIGTERM
