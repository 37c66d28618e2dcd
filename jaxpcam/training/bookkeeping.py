"""The host side of one member of the step loop (training/loop.py): its unfinished epoch's tally,
its pending step metrics, the epoch-end validation, schedule and best-epoch tracking, its
checkpoints and its metrics.jsonl lines. A single run is one member; each member of a
vectorized group keeps exactly the books its own run would (training/members.py)."""

import dataclasses
import math
import time
from pathlib import Path

import numpy as np

from jaxpcam.core.errors import RunFailed
from jaxpcam.core.files import json_ready
from jaxpcam.core.reporting import ProgressLine, log
from jaxpcam.run import best
from jaxpcam.run.record import append_metrics
from jaxpcam.training import checkpoint, early_stopping
from jaxpcam.training.checkpoint import Progress
from jaxpcam.training.parallel import is_primary
from jaxpcam.training.progress import Pace, Position, progress_text
from jaxpcam.training.schedules import step_rate, update_schedule
from jaxpcam.training.setup import Run
from jaxpcam.training.tracking import io_errors
from jaxpcam.training.validation import evaluate


@dataclasses.dataclass
class Tally:
    """The unfinished epoch, as far as the host knows it."""

    losses: list[float]  # per-step train losses (skipped steps excluded)
    skipped: int
    first_step: int  # where this process started the epoch (for images/s)
    start: float = dataclasses.field(default_factory=time.perf_counter)
    wait: float = 0.0  # seconds spent waiting for input
    correct: int = 0  # training images classified correctly (skipped steps excluded)
    count: int = 0
    last_lr: float | None = None  # the rate the latest step used

    def progress(self, kept: Progress) -> Progress:
        counts = {"epoch_correct": self.correct, "epoch_count": self.count}
        return dataclasses.replace(kept, epoch_losses=tuple(self.losses), epoch_skipped=self.skipped, **counts)


@dataclasses.dataclass
class Member:
    """One run's books in the step loop; ``index`` is its place on the member axis."""

    index: int
    run: Run
    step: int
    schedule: object
    progress: Progress
    tally: Tally
    pace: Pace
    line: ProgressLine
    pending: list = dataclasses.field(default_factory=list)  # (dispatch number, step) not yet on the host
    unpublished: list = dataclasses.field(default_factory=list)  # epoch records awaiting a committed checkpoint
    finished: bool = False  # trained to the end, stopped early, or failed
    failure: RunFailed | None = None
    label: str = ""  # prefixed to its log lines when it trains beside others

    @classmethod
    def start(cls, index: int, run: Run, now: float, label: str = "") -> "Member":
        """``now``: when training starts (``time.perf_counter``), the same for every member of a group."""
        step, progress = int(run.state.step), run.progress
        tally = Tally(list(progress.epoch_losses), progress.epoch_skipped, step, start=now)
        tally.correct, tally.count = progress.epoch_correct, progress.epoch_count
        done = step >= run.total_steps or bool(early_stopping.stopped(step, run.steps_per_epoch, progress, run.config))
        pace, line = Pace(now, step), ProgressLine(every=0.0)
        return cls(index, run, step, run.schedule, progress, tally, pace, line, finished=done, label=label)

    def log(self, message: str) -> None:
        log(f"{self.label}{message}")


def check_finite(member: Member, m, at: int) -> None:
    finite = math.isfinite(float(m.loss)) and math.isfinite(float(m.grad_norm))
    if not finite and member.run.config.training.nan_policy == "stop":
        wait_for_saves(member.run)
        raise RunFailed(
            f"non-finite loss ({float(m.loss)}) or gradient norm ({float(m.grad_norm)}) at step "
            f"{at}; last good checkpoint: {_latest(member.run)}. "
            "Lower training.learning_rate, set training.grad_clip_norm, or training.nan_policy=skip"
        )


def sync(member: Member, host_metrics: list, now: float) -> None:
    """Takes in the member's pending step metrics (now on the host): TensorBoard scalars, the
    epoch's losses, the non-finite check, and the progress report. ``now``: when the metrics
    arrived (``time.perf_counter``), the same for every member of a group, so their img/s agree."""
    run, tally, pace, step = member.run, member.tally, member.pace, member.step
    for j, m in enumerate(host_metrics):
        at = step - len(host_metrics) + 1 + j
        check_finite(member, m, at)
        run.writer.write_scalars(at, {"train/loss": m.loss, "train/grad_norm": m.grad_norm, "train/lr": m.lr})
        tally.last_lr = float(m.lr)
        if m.skipped:
            tally.skipped += 1
        else:
            tally.losses.append(float(m.loss))
            tally.correct, tally.count = tally.correct + int(m.correct), tally.count + int(m.count)
    window, so_far = (step - pace.window_step, now - pace.window_start), (step - tally.first_step, now - tally.start)
    at = Position(step, run.steps_per_epoch, run.config.training.epochs)
    loss = tally.losses[-1] if tally.losses else math.nan
    member.line.show(member.label + progress_text(at, loss, window, so_far, run.batch_size, pace, member.line.live))
    pace.window_start, pace.window_step = now, step


def _latest(run: Run) -> str:
    step = run.manager.latest_step()
    return "none yet" if step is None else f"step {step} in {run.workdir / 'checkpoints'}"


def _epoch_record(member: Member, val, step: int, epoch: int, elapsed: float) -> dict:
    run, tally, c = member.run, member.tally, member.run.config
    return {
        "epoch": epoch,
        "step": step,
        "train_loss": float(np.mean(np.asarray(tally.losses, np.float64))) if tally.losses else math.nan,
        "train_accuracy": tally.correct / tally.count if tally.count else math.nan,
        "val_loss": val.loss,
        **{f"val_{k}": v for k, v in val.metrics.items()},
        # the rate used during the epoch, before the update below; per-step rates: its last step's
        "lr": member.schedule.lr if step_rate(c.training, run.steps_per_epoch) is None else tally.last_lr,
        "skipped_steps": tally.skipped,
        "images_per_second": (step - tally.first_step) * run.batch_size / elapsed,
        "data_wait_fraction": tally.wait / elapsed,
    }


def end_epoch(member: Member, state, set_learning_rate, steps_ended: float) -> dict:
    """Validates ``state`` (the member's), steps its schedule (``set_learning_rate(lr)`` puts the
    new epoch rate in the trained state), tracks the best epoch, writes the scalars and starts the
    epoch-end checkpoint; returns the epoch's record. ``steps_ended``: when the epoch's last step
    ended (``time.perf_counter``), the same for every member of a group."""
    run, c, step = member.run, member.run.config, member.step
    epoch, elapsed, d = step // run.steps_per_epoch, steps_ended - member.tally.start, c.data
    val = evaluate(state, run.valid, d.eval_batch_size, d.num_workers, run.parallel, run.task, run.resident_valid)
    record = _epoch_record(member, val, step, epoch, elapsed)
    member.schedule = update_schedule(member.schedule, c.training, val.loss)
    state = state.with_learning_rate(run.parallel.replicate(np.float32(member.schedule.lr)))  # laid out like the state
    set_learning_rate(member.schedule.lr)
    value, progress = record.get(c.checkpoint.best_metric), member.progress
    improved = best.improves(value, progress.best_value, c.checkpoint.best_mode)
    progress = Progress(
        best_epoch=epoch if improved else progress.best_epoch,
        best_value=value if improved else progress.best_value,
        history=progress.history,
    )
    stop_reason = early_stopping.mark(record, progress, epoch, c)
    ready = json_ready(record)  # as metrics.jsonl and the checkpoint hold it
    member.progress = dataclasses.replace(progress, history=(*progress.history, ready))
    run.writer.write_scalars(step, {"train/accuracy": record["train_accuracy"]})
    run.writer.write_scalars(step, {"val/loss": val.loss, **{f"val/{k}": v for k, v in val.metrics.items()}})
    run.writer.write_scalars(step, {f"perf/{k}": record[k] for k in ("images_per_second", "data_wait_fraction")})
    save(run, state, member.schedule, member.progress, ready)
    _log_epoch(member, record, epoch, stop_reason)
    return record


def _log_epoch(member: Member, record: dict, epoch: int, stop_reason: str | None) -> None:
    shown = " ".join(f"{k} {v:.4f}" for k, v in record.items() if k.startswith("val_"))
    member.log(
        f"epoch {epoch} done: train_loss {record['train_loss']:.4f} train_accuracy {record['train_accuracy']:.4f} "
        f"{shown} lr {record['lr']:.3g} | "
        f"{record['images_per_second']:,.0f} img/s epoch mean, {record['data_wait_fraction']:.0%} waiting for data"
    )
    if stop_reason:
        member.log(f"stopping early after epoch {epoch} of {member.run.config.training.epochs}: {stop_reason}")


def save(run: Run, state, schedule, progress: Progress, metrics: dict | None = None) -> None:
    with checkpoint.write_errors(run.workdir):
        checkpoint.save(run.manager, state, schedule, progress, run.config, metrics, run.data_profile)


def wait_for_saves(run: Run) -> None:
    with checkpoint.write_errors(run.workdir):
        run.manager.wait_until_finished()


def publish_committed(member: Member) -> None:
    """Appends to metrics.jsonl (and drops from ``unpublished``) the epoch records that a
    committed checkpoint covers.

    A line in metrics.jsonl is therefore final: a run killed before its first checkpoint
    commits has no lines, and restarts; lines without any checkpoint mean the checkpoints were
    removed, and the run refuses to start over them (resume.check_no_orphaned_results)."""
    run, unpublished = member.run, member.unpublished
    if not unpublished:
        return
    folder = Path(run.manager.directory)
    committed = max((int(p.name) for p in folder.iterdir() if p.name.isdigit()), default=-1)
    ready = [r for r in unpublished if r["step"] <= committed]
    with io_errors(run.workdir):
        for record in ready:
            if is_primary():
                append_metrics(run.workdir, record)
    del unpublished[: len(ready)]
