"""Kill, preemption, corruption and failure: runs end bit-identical or fail loudly and safely."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import REPO, metrics_without_timing, run_main, tiny_overrides, tiny_state, train_in_process
from jaxpcam.config import base_config
from jaxpcam.training import checkpoint
from jaxpcam.training.schedules import ScheduleState

# 256 training images / batch 32 = 8 steps per epoch; 3 epochs; a mid-epoch checkpoint every 3 steps.
RESILIENT = {"training.epochs": 3, "checkpoint.every_steps": 3, "training.log_every_steps": 1}


def _args(workdir: Path, data: Path, **extra) -> list[str]:
    return ["--config", "configs/mlp.py", f"--workdir={workdir}", *tiny_overrides(data, **{**RESILIENT, **extra})]


def _popen(args, env_extra=None) -> subprocess.Popen:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", **(env_extra or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "jaxpcam.main", *args], cwd=REPO, env=env, stderr=subprocess.PIPE, text=True
    )


def _wait_for_step(proc: subprocess.Popen, step: int) -> str:
    """Reads the log until the progress line of global ``step`` appears."""
    seen = []
    for line in proc.stderr:
        seen.append(line)
        match = re.search(r"\(global (\d+)\)", line)
        if match and int(match.group(1)) >= step:
            return "".join(seen)
    raise AssertionError(f"the run ended before step {step}:\n{''.join(seen)[-3000:]}")


def _finish(workdir: Path, data: Path, **extra) -> subprocess.CompletedProcess:
    result = run_main(_args(workdir, data, **extra))
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _final_params(workdir: Path) -> list[np.ndarray]:
    import orbax.checkpoint as ocp

    manager = ocp.CheckpointManager((workdir / "checkpoints").resolve())
    restored = manager.restore(manager.latest_step())
    return [np.asarray(x) for x in jax.tree.leaves(restored.state["params"])]


@pytest.fixture(scope="module")
def reference(tiny_pcam, tmp_path_factory) -> Path:
    """An uninterrupted run, the yardstick for every interrupted one."""
    workdir = tmp_path_factory.mktemp("reference") / "run"
    _finish(workdir, tiny_pcam)
    return workdir


def _assert_same_run(workdir: Path, reference: Path) -> None:
    assert metrics_without_timing(workdir) == metrics_without_timing(reference)
    for a, b in zip(_final_params(workdir), _final_params(reference), strict=True):
        np.testing.assert_array_equal(a, b)


def test_sigkill_mid_epoch_then_resume_is_bit_identical(tiny_pcam, reference, tmp_path):
    workdir = tmp_path / "run"
    proc = _popen(_args(workdir, tiny_pcam))
    _wait_for_step(proc, 12)  # mid-epoch 2; the kill lands a step or two later
    proc.kill()
    proc.wait()
    result = _finish(workdir, tiny_pcam)
    # Whichever checkpoint was complete when the kill landed (saves are asynchronous).
    assert re.search(r"resuming from checkpoint step \d+ ", result.stderr)
    _assert_same_run(workdir, reference)


def test_sigkill_with_data_on_the_device_then_resume_on_the_host_is_bit_identical(tiny_pcam, reference, tmp_path):
    workdir = tmp_path / "run"
    proc = _popen(_args(workdir, tiny_pcam, **{"data.placement": "device"}))
    _wait_for_step(proc, 12)
    proc.kill()
    proc.wait()
    result = _finish(workdir, tiny_pcam, **{"data.placement": "host"})
    assert re.search(r"resuming from checkpoint step \d+ ", result.stderr)
    _assert_same_run(workdir, reference)


def _killed_as_save_starts(workdir: Path, data: Path, step: int, **extra) -> None:
    """Runs until the checkpoint save at global ``step`` has started, then SIGKILLs the run."""
    killed = run_main(_args(workdir, data, **extra), kill_after_save=step)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]


def test_sigkill_during_a_checkpoint_write_then_resume_is_bit_identical(tiny_pcam, reference, tmp_path):
    workdir = tmp_path / "run"
    # The epoch-1 checkpoint (step 8) is being written when the process dies: the resume starts
    # from the step-6 checkpoint (or step 8 if it committed) and recomputes epoch 1.
    _killed_as_save_starts(workdir, tiny_pcam, 8)
    result = _finish(workdir, tiny_pcam)
    assert re.search(r"resuming from checkpoint step (6|8) ", result.stderr)
    _assert_same_run(workdir, reference)


def test_sigterm_checkpoints_exits_cleanly_and_resumes(tiny_pcam, reference, tmp_path):
    workdir = tmp_path / "run"
    proc = _popen(_args(workdir, tiny_pcam))
    _wait_for_step(proc, 4)
    proc.send_signal(signal.SIGTERM)
    rest = proc.stderr.read()
    assert proc.wait() == 128 + signal.SIGTERM
    match = re.search(r"stopped on SIGTERM: saved checkpoint at step (\d+)", rest)
    assert match, rest[-2000:]
    assert "Traceback" not in rest
    step = match.group(1)
    assert (workdir / "checkpoints" / step).is_dir()
    result = _finish(workdir, tiny_pcam)
    assert f"resuming from checkpoint step {step} " in result.stderr
    _assert_same_run(workdir, reference)


def test_corrupt_latest_checkpoint_is_skipped_for_the_previous_one(tiny_pcam, reference, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(reference, workdir)
    latest = max(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
    for path in (workdir / "checkpoints" / str(latest) / "state").rglob("*"):
        if path.is_file():
            path.write_bytes(b"\x00garbage" * 10)
    result = _finish(workdir, tiny_pcam)
    assert latest == 24
    assert "WARNING: checkpoint 24 is damaged" in result.stderr
    assert "resuming from checkpoint step 16 " in result.stderr  # epoch 2's end (mid-epoch 21 went when 24 came)
    assert any((workdir / "corrupt_checkpoints").iterdir())  # kept for inspection, not deleted
    _assert_same_run(workdir, reference)


def test_start_fresh_archives_the_earlier_run(tiny_pcam, reference, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(reference, workdir)
    before = (workdir / "metrics.jsonl").read_text()
    (workdir / "eval").mkdir()
    (workdir / "eval" / "threshold.json").write_text("{}")  # the earlier model's: must not serve the new one
    refused = run_main(_args(workdir, tiny_pcam, seed=43))
    assert refused.returncode == 2 and "--start_fresh" in refused.stderr and "seed" in refused.stderr
    result = run_main([*_args(workdir, tiny_pcam, seed=43, **{"training.epochs": 1}), "--start_fresh"])
    assert result.returncode == 0, result.stderr[-2000:]
    (archived,) = (workdir / "archive").iterdir()
    assert (archived / "metrics.jsonl").read_text() == before
    assert (archived / "checkpoints").is_dir() and (archived / "eval" / "threshold.json").is_file()
    assert not (workdir / "eval").exists()
    assert [r["epoch"] for r in metrics_without_timing(workdir)] == [1]


def test_best_checkpoint_survives_rotation(tmp_path):
    c = base_config().checkpoint
    c.keep = 1
    manager = checkpoint.open_manager(tmp_path, c)
    state, schedule, progress = tiny_state(), ScheduleState(lr=1e-3), checkpoint.Progress()
    for step, auc in zip((1, 2, 3, 4), (0.5, 0.9, 0.7, None), strict=True):
        metrics = {"val_roc_auc": auc} if auc is not None else None  # step 4: a mid-epoch save
        checkpoint.save(manager, state.replace(step=jnp.asarray(step)), schedule, progress, base_config(), metrics, {})
        manager.wait_until_finished()
    assert manager.all_steps() == [2, 3, 4]  # the best (0.9), the latest epoch end, the newest


def test_nan_stop_names_the_step_and_the_last_good_checkpoint(tiny_pcam, tmp_path):
    result = run_main(_args(tmp_path / "run", tiny_pcam, **{"training.learning_rate": 1e30}))
    assert result.returncode == 1
    assert re.search(
        r"run failed: non-finite loss .* at step \d+; last good checkpoint: (none yet|step \d+)", result.stderr
    )
    assert "Traceback" not in result.stderr


def test_nan_skip_counts_skipped_updates_and_finishes(tiny_pcam, tmp_path):
    workdir = tmp_path / "run"
    extra = {"training.learning_rate": 1e30, "training.nan_policy": "skip", "training.epochs": 1}
    _finish(workdir, tiny_pcam, **extra)
    (record,) = metrics_without_timing(workdir)
    assert 1 <= record["skipped_steps"] <= 8
    assert all(np.isfinite(p).all() for p in _final_params(workdir))  # skipped updates left no NaN


def test_unwritable_workdir_is_a_clear_error(tiny_pcam, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    result = run_main(_args(blocker / "run", tiny_pcam))
    assert result.returncode == 2
    assert "cannot create the run directory" in result.stderr and "Traceback" not in result.stderr


def test_orbax_only_snippet_from_the_docs_restores_on_another_device_layout(reference):
    page = (REPO / "docs" / "run-directory.md").read_text()
    block = page.split("<!-- orbax-only-restore")[1].split("```python\n")[1].split("```")[0]
    ckpt_dir = str((reference / "checkpoints").resolve())
    code = block.replace("/abs/path/runs/pcam_mlp/seed42/checkpoints", ckpt_dir)
    code += "\nimport sys\nassert 'jaxpcam' not in sys.modules\n"
    code += "print(sorted(params), config['model']['name'], len(jax.devices()))\n"
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=3"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("['Dense_0', 'Dense_1'] mlp 3")
    # Orbax's current API: a handler registry, and item metadata from the step's metadata
    assert "handler_registry=" in block and "item_handlers" not in block and ".item_metadata(" not in block


def test_failed_checkpoint_write_is_one_line_and_keeps_earlier_checkpoints(tiny_pcam, tmp_path):
    workdir = tmp_path / "run"
    _finish(workdir, tiny_pcam, **{"training.epochs": 1, "checkpoint.every_steps": 0})
    args = _args(workdir, tiny_pcam, **{"training.epochs": 2, "checkpoint.every_steps": 0})
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    # Files may not grow past 1 MiB, and exceeding it is an error (EFBIG), not a SIGXFSZ kill:
    # a disk that fills up while the checkpoint is written, without needing root or a mount.
    limited = 'trap "" XFSZ; ulimit -f 1024; exec "$0" -m jaxpcam.main "$@"'
    result = subprocess.run(
        ["bash", "-c", limited, sys.executable, *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr[-2000:]
    assert "run failed: writing a checkpoint in" in result.stderr and "Traceback" not in result.stderr
    assert "earlier checkpoints are intact" in result.stderr
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()) == ["8"]
    assert _final_params(workdir)  # step 8 still restores


def test_sigkill_before_the_first_checkpoint_commits_then_rerun_starts_over(tiny_pcam, reference, tmp_path):
    workdir = tmp_path / "run"
    # Epoch-end checkpoints only: the kill lands while the first one (step 8) is being written,
    # after the epoch was evaluated. Nothing is final yet, so the same command starts over.
    _killed_as_save_starts(workdir, tiny_pcam, 8, **{"checkpoint.every_steps": 0})
    assert not (workdir / "metrics.jsonl").exists() or (workdir / "checkpoints" / "8").is_dir()
    result = _finish(workdir, tiny_pcam, **{"checkpoint.every_steps": 0})
    assert "took over the lock of a run that ended without releasing it" in result.stderr
    _assert_same_run(workdir, reference)


def test_deleted_checkpoints_with_final_results_are_refused(tiny_pcam, reference, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(reference, workdir)
    shutil.rmtree(workdir / "checkpoints")
    result = run_main(_args(workdir, tiny_pcam))
    assert result.returncode == 2 and "no readable checkpoint" in result.stderr


@pytest.mark.parametrize("change", [{"model.hidden_units": "(24,)"}, {"training.optimizer": "sgd"}])
def test_changed_model_or_optimizer_is_refused_before_any_checkpoint_is_touched(tiny_pcam, reference, tmp_path, change):
    workdir = tmp_path / "run"
    shutil.copytree(reference, workdir)
    before = sorted(p.name for p in (workdir / "checkpoints").iterdir())
    result = run_main(_args(workdir, tiny_pcam, **change))
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"different config ({next(iter(change))})" in result.stderr
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == before
    assert not (workdir / "corrupt_checkpoints").exists()
    again = _finish(workdir, tiny_pcam)  # the original command still resumes
    assert "nothing to do" in again.stderr


def _largest_array_file(step_dir: Path) -> Path:
    return max((p for p in (step_dir / "state").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)


def test_bit_rot_in_array_data_is_caught_on_resume(tiny_pcam, reference, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(reference, workdir)
    data_file = _largest_array_file(workdir / "checkpoints" / "24")
    with open(data_file, "r+b") as f:  # same size, 8 bytes inside the array data
        f.seek(data_file.stat().st_size // 2)
        f.write(b"\x12\x34\x56\x78\x9a\xbc\xde\xf0")
    result = _finish(workdir, tiny_pcam, **{"training.epochs": 3})
    assert "WARNING: checkpoint 24 is damaged (" in result.stderr  # a checksum mismatch, or a read error
    assert "resuming from checkpoint step 16 " in result.stderr
    _assert_same_run(workdir, reference)


def test_a_garbled_metrics_item_of_an_old_checkpoint_is_set_aside(tiny_pcam, reference, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(reference, workdir)
    oldest = min(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
    (workdir / "checkpoints" / str(oldest) / "metrics" / "metrics").write_text('{"val_roc')
    result = _finish(workdir, tiny_pcam)
    assert f"WARNING: checkpoint {oldest} is damaged (metrics/metrics is damaged" in result.stderr
    assert "Traceback" not in result.stderr
    assert "nothing to do" in result.stderr
    assert any(p.name.startswith(f"{oldest}-") for p in (workdir / "corrupt_checkpoints").iterdir())


def test_a_second_run_on_a_workdir_in_use_stops_at_once(tiny_pcam, reference, tmp_path):
    workdir = tmp_path / "run"
    first = _popen(_args(workdir, tiny_pcam))
    _wait_for_step(first, 2)
    first.send_signal(signal.SIGSTOP)  # holds it mid-run, however fast the machine
    try:
        second = run_main(_args(workdir, tiny_pcam), timeout=120)
    finally:
        first.send_signal(signal.SIGCONT)
    rest = first.stderr.read()
    assert first.wait() == 0, rest[-2000:]
    assert second.returncode == 2
    assert re.search(rf"is in use by another run \(host \S+ pid {first.pid}", second.stderr), second.stderr[-2000:]
    assert "Traceback" not in second.stderr
    _assert_same_run(workdir, reference)
    assert not (workdir / "run.lock").exists()


def test_a_rerun_with_nothing_to_train_keeps_config_json_and_a_resumption_records_its_changes(
    tiny_pcam, reference, tmp_path
):
    workdir = tmp_path / "run"
    shutil.copytree(reference, workdir)
    before = (workdir / "config.json").read_text()
    _finish(workdir, tiny_pcam, **{"training.epochs": 2})
    assert (workdir / "config.json").read_text() == before  # still says epochs=3: nothing was trained
    _finish(workdir, tiny_pcam, **{"training.epochs": 4})
    record = json.loads((workdir / "config.json").read_text())
    assert record["provenance"] == json.loads(before)["provenance"]  # how the run began
    assert record["config"]["training"]["epochs"] == 4
    (resumed,) = record["resumptions"]
    assert resumed["from_step"] == 24 and resumed["changed"] == {"training.epochs": [3, 4]}


def test_sigkill_after_an_epoch_checkpoint_commits_but_before_its_line_is_written_keeps_the_line(
    tiny_pcam, reference, tmp_path
):
    workdir = tmp_path / "run"
    # Killed as the step-9 save starts: the epoch-1 checkpoint (step 8) has committed, its
    # metrics.jsonl line may not be written yet; the resumed run rewrites metrics.jsonl from the
    # history of finished epochs that every checkpoint carries.
    _killed_as_save_starts(workdir, tiny_pcam, 9)
    result = _finish(workdir, tiny_pcam)
    assert re.search(r"resuming from checkpoint step (6|8|9) ", result.stderr)
    _assert_same_run(workdir, reference)


def test_a_damaged_config_item_is_damage_not_a_changed_config(tiny_pcam, reference, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(reference, workdir)
    item = workdir / "checkpoints" / "24" / "config" / "metadata"
    item.write_text(item.read_text().replace('"hidden_units": [16]', '"hidden_units": [17]'))
    (workdir / "metrics.jsonl").write_text((workdir / "metrics.jsonl").read_text() + "garbage\n")
    result = _finish(workdir, tiny_pcam)
    assert "WARNING: checkpoint 24 is damaged (checksum mismatch in config)" in result.stderr
    assert "resuming from checkpoint step 16 " in result.stderr
    _assert_same_run(workdir, reference)  # metrics.jsonl rewritten from the checkpoint: garbage gone


def test_on_the_cpu_a_save_is_complete_when_it_returns(tmp_path):
    """On the CPU saves run on the training thread (checkpoint.SAVES_IN_BACKGROUND), not beside the step."""
    config = base_config()
    manager = checkpoint.open_manager(tmp_path, config.checkpoint)
    state, schedule = tiny_state().replace(step=jnp.asarray(7)), ScheduleState(lr=1e-3)
    checkpoint.save(manager, state, schedule, checkpoint.Progress(), config, None, {})
    assert not manager.is_saving_in_progress() and manager.all_steps() == [7]
    assert (tmp_path / "checkpoints" / "7").is_dir()
    manager.close()


def test_saves_in_the_background_write_the_same_run(tiny_pcam, tmp_path, monkeypatch):
    """An accelerator's background saves (forced here on the CPU) and the CPU's own: the same results."""
    train_in_process(tmp_path / "foreground", tiny_pcam, **RESILIENT)
    monkeypatch.setitem(checkpoint.SAVES_IN_BACKGROUND, "cpu", True)
    train_in_process(tmp_path / "background", tiny_pcam, **RESILIENT)
    assert metrics_without_timing(tmp_path / "foreground") == metrics_without_timing(tmp_path / "background")
    steps = [sorted(p.name for p in (tmp_path / run / "checkpoints").iterdir()) for run in ("foreground", "background")]
    assert steps[0] == steps[1] and len(metrics_without_timing(tmp_path / "foreground")) == 3
