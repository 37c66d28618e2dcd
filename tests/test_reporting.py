"""One logger and one metric writer for every command."""

import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from jaxpcam.core.reporting import MetricWriter, captured_log, format_duration, log


def test_metric_writer_writes_scalars_images_pr_curves_and_hparams(tmp_path):
    with MetricWriter(tmp_path / "a") as writer:
        writer.write_scalars(3, {"val/loss": 0.5})
        writer.write_images(3, {"eval/roc": np.zeros((4, 5, 3), np.uint8)})
        writer.write_pr_curve(3, "eval/pr_curve", np.array([0, 1, 1]), np.array([0.2, 0.7, 0.9]))
    events = EventAccumulator(str(tmp_path / "a"), size_guidance={"images": 0, "tensors": 0}).Reload()
    assert [(e.step, e.value) for e in events.Scalars("val/loss")] == [(3, 0.5)]
    assert events.Tags()["images"] == ["eval/roc"] and "eval/pr_curve" in events.Tags()["tensors"]
    with MetricWriter(tmp_path / "h") as writer:
        writer.write_hparams({"lr": 0.1}, {"hparams/best_val_roc_auc": 0.9})
    assert EventAccumulator(str(tmp_path / "h")).Reload().Scalars("hparams/best_val_roc_auc")[0].value == np.float32(
        0.9
    )


def test_a_disabled_writer_writes_nothing(tmp_path):
    with MetricWriter(tmp_path / "b", enabled=False) as writer:
        writer.write_scalars(1, {"x": 1.0})
    assert not (tmp_path / "b").exists()


def test_log_lines_are_captured_and_durations_read_as_clock_time():
    with captured_log() as lines:
        log("hello")
    assert lines == ["hello"] and format_duration(3725) == "1:02:05"


def test_a_failed_write_in_the_writer_thread_is_raised_on_close(tmp_path):
    import errno

    import pytest

    writer = MetricWriter(tmp_path / "c")
    writer.write_scalars(1, {"x": 1.0})
    writer._record_thread_failure(type("A", (), {"exc_value": OSError(errno.ENOSPC, "No space left on device")})())
    with pytest.raises(OSError, match="No space left on device"):
        writer.close()


def test_progress_in_a_log_file_is_plain_lines_not_carriage_returns(capsys, messages):
    from jaxpcam.core.reporting import ProgressLine

    line = ProgressLine(every=3600.0)  # stderr is captured here: not a terminal
    for done in (1, 2, 3):
        line.show(f"train: {done}/3 images", final=done == 3)
    assert "\r" not in capsys.readouterr().err
    assert messages == ["train: 1/3 images", "train: 3/3 images"]  # the first, then throttled, then the end


def test_the_audit_progress_in_a_log_file_has_no_carriage_returns(tiny_pcam, tmp_path, capsys):
    from jaxpcam import audit

    assert audit.main([str(tiny_pcam), "--out", str(tmp_path / "audit")]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err and "train: 256/256 images" in err


def test_a_live_progress_line_is_redrawn_in_place_and_a_log_line_wipes_it_first(capsys):
    from jaxpcam.core.reporting import ProgressLine

    line = ProgressLine(live=True)  # as on a terminal
    line.show("step 1/2")
    line.show("step 2/2")
    log("epoch done")
    err = capsys.readouterr().err
    assert err.startswith("\r\x1b[Kstep 1/2\r\x1b[Kstep 2/2\r\x1b[K[")  # the log line starts on a clean line
    assert err.endswith("epoch done\n") and not ProgressLine.drawn


def test_training_progress_labels_the_window_speed_and_both_etas(monkeypatch):
    from jaxpcam.training.progress import Pace, Position, progress_text

    at = Position(step=110, steps_per_epoch=100, epochs=3)  # 10 steps into epoch 2
    pace = Pace(0.0, 0, validation_seconds=5.0)
    text = progress_text(at, 0.25, window=(8, 2.0), epoch=(10, 10.0), batch_size=32, pace=pace, live=False)
    # 128 img/s over the last 8 steps; 1 step/s so far: 90 s left in the epoch, 190 s of steps
    # and two more validations of 5 s in the run
    assert (
        text
        == "epoch 2/3 step 10/100 (global 110) loss 0.2500 | 128 img/s (last 8 steps) | ETA epoch 0:01:30, run 0:03:20"
    )
    monkeypatch.setenv("COLUMNS", "200")
    bar = progress_text(at, 0.25, window=(8, 2.0), epoch=(10, 10.0), batch_size=32, pace=pace, live=True)
    assert bar.startswith("epoch 2/3 [##" + "." * 18 + "] 10/100 loss 0.2500 | 128 img/s")
    monkeypatch.setenv("COLUMNS", "80")  # a narrow terminal: the bar gives way, the numbers stay
    assert progress_text(at, 0.25, (8, 2.0), (10, 10.0), 32, pace, live=True).startswith("epoch 2/3 10/100 loss")
    assert "?" in progress_text(at, 0.25, (0, 0.0), (0, 0.0), 32, pace, live=False)  # no pace yet: no ETA


def test_counts_say_their_noun_in_the_right_number():
    from jaxpcam.core.reporting import count

    assert [count(n, "epoch") for n in (0, 1, 2, 1234)] == ["0 epochs", "1 epoch", "2 epochs", "1,234 epochs"]
