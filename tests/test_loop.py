"""train_and_evaluate in-process on tiny data (the Flax examples' train_test.py), and the loop's
small predicates. Signals and kills stay in subprocess tests (test_reliability.py)."""

import json
import re
import shutil

import jax
import ml_collections
import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import metrics_without_timing, tiny_config, train_in_process
from jaxpcam.core.reporting import captured_log
from jaxpcam.training import loop


def _tiny_config(data_dir, **overrides) -> ml_collections.ConfigDict:
    return tiny_config(data_dir, **{"checkpoint.every_steps": 5, **overrides})


def test_train_and_evaluate_in_process(tiny_pcam, tmp_path):
    workdir = tmp_path / "run"
    summary = loop.train_and_evaluate(_tiny_config(tiny_pcam), workdir)
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2] and [r["step"] for r in records] == [8, 16]
    assert summary["epochs"] == 2 and summary["best"]["epoch"] in (1, 2) and summary["last"] == records[-1]
    assert all(np.isfinite(r["train_loss"]) and 0 <= r["val_roc_auc"] <= 1 for r in records)
    kept = {int(p.name) for p in (workdir / "checkpoints").iterdir()}
    assert kept == {8, 16}  # the epoch ends (checkpoint.keep=2; one of them the best); mid-epoch 5, 10, 15 gone
    assert not (workdir / "run.lock").exists()
    with captured_log() as lines:
        again = loop.train_and_evaluate(_tiny_config(tiny_pcam), workdir)  # finished: nothing to do
    assert again["last"] == records[-1]
    assert any(line.startswith("nothing to do") for line in lines)
    assert not any("compiled the train step" in line for line in lines)  # nothing compiled for nothing


def test_predicates():
    config = _tiny_config("x", **{"training.log_every_steps": 4, "checkpoint.every_steps": 6})
    assert [loop._time_to_sync(n, config) for n in (3, 4, 5)] == [False, True, True]
    assert [s for s in range(1, 20) if loop._time_to_checkpoint(s, config)] == [6, 12, 18]
    config.checkpoint.every_steps = 0
    assert not any(loop._time_to_checkpoint(s, config) for s in range(1, 20))


def _records(workdir):
    return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


def _drop_latest_checkpoint(workdir):
    """What a kill right before the last epoch's checkpoint commits leaves: resume from the one before."""
    steps = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
    shutil.rmtree(workdir / "checkpoints" / str(steps[-1]))
    return steps[-2]


def _final_params(workdir):
    import orbax.checkpoint as ocp

    manager = ocp.CheckpointManager((workdir / "checkpoints").resolve())
    step = manager.latest_step()
    params = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore())).state["params"]
    manager.close()
    return step, jax.tree.map(np.asarray, params)


def _stop_at_step(monkeypatch, at: int):
    """As if SIGTERM arrived during step ``at`` (the loop asks once per step): it checkpoints there
    and stops, in this process."""
    calls = []

    def stop_requested(stop, at_sync_point):
        calls.append(1)
        if len(calls) == at:
            stop.signal_name = "SIGTERM"
        return stop.requested

    monkeypatch.setattr(loop, "_stop_requested", stop_requested)


def test_cosine_warmup_resume_is_bit_exact_and_logs_the_rates_used(tiny_pcam, tmp_path, monkeypatch):
    from jaxpcam.core.errors import Stopped
    from jaxpcam.training.schedules import step_rate

    overrides = {"training.scheduler": "cosine", "training.warmup_steps": 6, "training.min_lr": 1e-5}
    whole, split, stopped = tmp_path / "whole", tmp_path / "split", tmp_path / "stopped"
    train_in_process(whole, tiny_pcam, **overrides)
    train_in_process(split, tiny_pcam, **overrides)
    assert _drop_latest_checkpoint(split) == 8  # resume from the end of epoch 1
    lines = train_in_process(split, tiny_pcam, **overrides)
    assert any("resuming from checkpoint step 8" in line for line in lines)
    with monkeypatch.context() as patch:  # and from the middle of epoch 2 (train_accuracy's counts in progress)
        _stop_at_step(patch, 11)
        with pytest.raises(Stopped, match="saved checkpoint at step 11"):
            train_in_process(stopped, tiny_pcam, **overrides)
    lines = train_in_process(stopped, tiny_pcam, **overrides)
    assert any("resuming from checkpoint step 11" in line for line in lines)
    for resumed in (split, stopped):
        assert metrics_without_timing(resumed) == metrics_without_timing(whole)
        (step_a, a), (step_b, b) = _final_params(whole), _final_params(resumed)
        assert step_a == step_b == 16 and all(jax.tree.leaves(jax.tree.map(np.array_equal, a, b)))

    records = _records(whole)
    rate = step_rate(tiny_config(tiny_pcam, **overrides).training, steps_per_epoch=8)
    assert records[-1]["lr"] == np.float32(1e-5)  # cosine ends at min_lr
    events = EventAccumulator(str(whole))
    events.Reload()
    logged = [e.value for e in events.Scalars("train/lr")]
    # per step, the rate each step used (in the step XLA fuses the formula: equal to about 1e-6)
    assert logged == pytest.approx([float(rate(s, 1e-3)) for s in range(16)], rel=1e-5)
    assert [r["lr"] for r in records] == [np.float32(logged[7]), np.float32(logged[15])]  # each epoch's last step
    assert logged[0] == pytest.approx(1e-3 / 6, rel=1e-6) and logged[5] == np.float32(1e-3)  # warmup start, end


def test_early_stopping_stops_at_the_same_epoch_uninterrupted_and_resumed(tiny_pcam, tmp_path):
    # A rate so small that nothing changes: val_accuracy ties epoch 1 every epoch, and a tie never
    # improves (best.py), so patience 2 stops after epoch 3 of 5.
    overrides = {
        "training.learning_rate": 1e-12,
        "training.epochs": 5,
        "training.early_stopping_patience": 2,
        "checkpoint.best_metric": "val_accuracy",
    }
    whole, split = tmp_path / "whole", tmp_path / "split"
    lines = train_in_process(whole, tiny_pcam, **overrides)
    records = _records(whole)
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert records[-1]["stopped_early"] is True and not any("stopped_early" in r for r in records[:-1])
    assert any(
        "stopping early after epoch 3 of 5: val_accuracy (max) has not improved for 2 epochs" in x for x in lines
    )

    train_in_process(split, tiny_pcam, **overrides)
    assert _drop_latest_checkpoint(split) == 16  # as if killed before epoch 3's checkpoint committed
    train_in_process(split, tiny_pcam, **overrides)
    assert metrics_without_timing(split) == metrics_without_timing(whole)

    before = (whole / "metrics.jsonl").read_text(), (whole / "config.json").read_text()
    for extra in ({}, {"training.epochs": 8}):  # a rerun, even with more epochs, meets the same rule
        lines = train_in_process(whole, tiny_pcam, **{**overrides, **extra})
        assert any("nothing to do: the run stopped early after epoch 3" in x for x in lines)
        assert ((whole / "metrics.jsonl").read_text(), (whole / "config.json").read_text()) == before
    train_in_process(whole, tiny_pcam, **{**overrides, "training.early_stopping_patience": 3})
    assert [r["epoch"] for r in _records(whole)] == [1, 2, 3, 4]  # a higher patience trains on, one more epoch
    assert _records(whole)[-1]["stopped_early"] is True


def test_train_accuracy_in_metrics_and_tensorboard_and_the_model_summary(tiny_pcam, tmp_path):
    lines = train_in_process(tmp_path / "run", tiny_pcam)
    records = _records(tmp_path / "run")
    assert all(0 <= r["train_accuracy"] <= 1 for r in records)
    assert all((r["train_accuracy"] * 256).is_integer() for r in records)  # a count over the epoch's 256 images
    events = EventAccumulator(str(tmp_path / "run"))
    events.Reload()
    assert [e.value for e in events.Scalars("train/accuracy")] == [np.float32(r["train_accuracy"]) for r in records]
    (summary,) = [x for x in lines if x.startswith("model mlp:")]
    match = re.search(
        r"model mlp: ([\d,]+) parameters \(Dense_0 ([\d,]+), Dense_1 ([\d,]+)\); ([\d.]+) (\w)FLOPs per image", summary
    )
    assert match, summary
    total, first, second = (int(match.group(i).replace(",", "")) for i in (1, 2, 3))
    assert first == 27648 * 16 + 16 and second == 16 + 1 and total == first + second
    assert float(match.group(4)) > 0 and match.group(5) in "kMG"
