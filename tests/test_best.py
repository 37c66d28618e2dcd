"""One rule for "best": highest (or lowest) finite value, ties to the earliest epoch, everywhere."""

import jax.numpy as jnp

from conftest import tiny_state
from jaxpcam.config import base_config
from jaxpcam.run import best
from jaxpcam.training import checkpoint
from jaxpcam.training.schedules import ScheduleState

RECORDS = [
    {"epoch": 1, "val_accuracy": 0.7, "val_loss": 0.5},
    {"epoch": 2, "val_accuracy": 0.9, "val_loss": 0.4},
    {"epoch": 3, "val_accuracy": 0.9, "val_loss": 0.4},  # a tie: the earlier epoch stays best
    {"epoch": 4, "val_accuracy": None, "val_loss": float("nan")},
]


def test_ties_go_to_the_earliest_epoch_in_both_directions():
    assert best.best_record(RECORDS, "val_accuracy", "max")["epoch"] == 2
    assert best.best_record(RECORDS, "val_loss", "min")["epoch"] == 2
    assert best.best_record(RECORDS[3:], "val_loss", "min") is None
    assert best.improves(0.9, None, "max") and not best.improves(0.9, 0.9, "max")
    assert not best.improves(float("nan"), 0.1, "min")


def test_column_directions():
    assert best.mode_of("best_val_loss") == "min" and best.mode_of("test_brier") == "min"
    assert best.mode_of("final_val_roc_auc") == "max"
    assert best.column_mode("best_val_accuracy", "val_accuracy", "min") == "min"  # the run's own choice


def test_retention_keeps_the_checkpoint_the_summary_and_evaluate_call_best(tmp_path):
    from jaxpcam.evaluation.loading import _manager, select_step

    config = base_config()
    config.checkpoint.keep, config.checkpoint.best_metric = 1, "val_accuracy"
    manager = checkpoint.open_manager(tmp_path, config.checkpoint)
    state, schedule, progress = tiny_state(), ScheduleState(lr=1e-3), checkpoint.Progress()
    for record in RECORDS:
        step = record["epoch"] * 10
        metrics = {**record, "step": step}
        checkpoint.save(manager, state.replace(step=jnp.asarray(step)), schedule, progress, config, metrics, {})
        manager.wait_until_finished()
    assert manager.all_steps() == [20, 40]  # epoch 2 (not the later tie, epoch 3) and the latest
    manager.close()
    assert select_step(_manager(tmp_path), "best") == 20


def test_mid_epoch_checkpoints_never_evict_epoch_ends_and_go_once_superseded(tmp_path):
    config = base_config()
    config.checkpoint.keep, config.checkpoint.best_metric = 2, "val_accuracy"
    manager = checkpoint.open_manager(tmp_path, config.checkpoint)
    state, schedule, progress = tiny_state(), ScheduleState(lr=1e-3), checkpoint.Progress()
    kept = []
    for step, record in [(10, RECORDS[1]), (15, None), (17, None), (20, RECORDS[0]), (25, None), (30, RECORDS[0])]:
        metrics = {**record, "step": step} if record else None
        checkpoint.save(manager, state.replace(step=jnp.asarray(step)), schedule, progress, config, metrics, {})
        manager.wait_until_finished()
        kept.append(manager.all_steps())
    # the newest (for resume) is always there; a mid-epoch one goes when a newer one is complete;
    # epoch ends: the latest 2 (20, 30) and the best (10, val_accuracy 0.9)
    assert kept == [[10], [10, 15], [10, 17], [10, 20], [10, 20, 25], [10, 20, 30]]
    manager.close()
