"""train_and_evaluate: one flat loop over steps, with small predicates for "sync metrics now",
"checkpoint now", "the epoch ends: validate" and "stop requested" (big_vision's train.py shape).

Everything the loop reads is built once by training/setup.py; the jitted steps are in steps.py,
the epoch-end validation pass in validation.py. The loop keeps every promise of the README:
bit-exact resume, SIGTERM honoured within a bounded time (preemption.py), metrics.jsonl lines only once a committed
checkpoint covers them, data-wait accounting, a log line every training.log_every_steps steps.
"""

import contextlib
import dataclasses
import math
import signal
import time
from pathlib import Path

import jax
import ml_collections
import numpy as np

from jaxpcam.config.checks import validate as validate_config
from jaxpcam.core.errors import RunFailed, Stopped, UserError
from jaxpcam.core.files import json_ready
from jaxpcam.core.reporting import ProgressLine, log
from jaxpcam.core.runtime import apply_run_settings
from jaxpcam.run import best
from jaxpcam.run import lock as workdir_lock
from jaxpcam.run.record import append_metrics, read_metrics
from jaxpcam.training import checkpoint, early_stopping
from jaxpcam.training.checkpoint import Progress
from jaxpcam.training.parallel import any_process, is_primary
from jaxpcam.training.preemption import RunAhead, StopRequest
from jaxpcam.training.progress import Pace, Position, progress_text
from jaxpcam.training.schedules import step_rate, update_schedule
from jaxpcam.training.setup import Run, close, compile_train_step, prepare
from jaxpcam.training.tracking import io_errors
from jaxpcam.training.validation import evaluate


def default_workdir(config: ml_collections.ConfigDict) -> Path:
    return Path("runs") / config.experiment_name / f"seed{config.seed}"


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: Path, start_fresh: bool = False) -> dict:
    """Trains ``config`` in ``workdir``, resuming from its latest checkpoint; returns a summary."""
    validate_config(config)
    run_settings = apply_run_settings(config.training)  # before the first JAX computation
    try:
        workdir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create the run directory {workdir}: {err.strerror or err}") from None
    with _workdir_held(workdir):
        checkpoint.remove_partial_saves(workdir)  # a killed run's: this run holds the lock, none writes here
        try:
            run = prepare(config, workdir, start_fresh, run_settings)
        except BaseException:
            checkpoint.remove_partial_saves(workdir)
            raise
        try:
            with StopRequest(int(run.state.step)) as stop:
                final = _train(run, stop)
        finally:
            close(run)
    if run.restored is not None and run.restored.step == int(final.step):
        log(early_stopping.nothing_to_do(run.restored.step, run.steps_per_epoch, run.progress, config))
    return _summary(workdir, config.checkpoint)


@contextlib.contextmanager
def _workdir_held(workdir: Path):
    """Process 0 holds the workdir's lock for the job; a refusal stops every process."""
    with contextlib.ExitStack() as stack:
        refusal = None
        if is_primary():
            try:
                stack.enter_context(workdir_lock.held(workdir))
            except (UserError, OSError) as err:
                refusal = err if isinstance(err, UserError) else UserError(f"cannot lock {workdir}: {err}")
        if any_process(refusal is not None):
            raise refusal or UserError(f"process 0 of this job could not lock {workdir}; see its log")
        yield


@dataclasses.dataclass
class _Tally:
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


# Small predicates: when to do what.


def _time_to_sync(pending: int, config) -> bool:
    return pending >= config.training.log_every_steps


def _time_to_checkpoint(step: int, config) -> bool:
    every = config.checkpoint.every_steps
    return bool(every) and step % every == 0


def _stop_requested(stop: StopRequest, at_sync_point: bool) -> bool:
    """With several processes all must stop at the same step, so the flag is agreed on (one tiny
    all-gather) only at agreement points: about every preemption.AGREE_SECONDS, and epoch ends."""
    if jax.process_count() == 1:
        return stop.requested
    return at_sync_point and stop.agree()


def _train(run: Run, stop: StopRequest):
    """The step loop; returns the final state. Metrics come to the host once per sync."""
    c, spe = run.config, run.steps_per_epoch
    state, schedule, progress = run.state, run.schedule, run.progress
    step = int(state.step)
    if step >= run.total_steps or early_stopping.stopped(step, spe, progress, c):
        return state  # a rerun of a finished run, or of one that stopped early: nothing to compile or do
    train_fn = compile_train_step(run)
    tally = _Tally(list(progress.epoch_losses), progress.epoch_skipped, step)
    tally.correct, tally.count = progress.epoch_correct, progress.epoch_count
    pending, unpublished = [], []
    pace, line = Pace(time.perf_counter(), step), ProgressLine(every=0.0)
    ahead = RunAhead()  # a stop waits for the step in flight, not for a queue of them
    try:
        while step < run.total_steps:
            before = time.perf_counter()
            batch = run.parallel.global_batch(next(run.batches))
            tally.wait += time.perf_counter() - before
            state, metrics = train_fn(state, batch, run.dropout_key, run.resident_train)
            pending.append(metrics)
            ahead.dispatched(metrics)
            step += 1
            epoch_ends = step % spe == 0
            sync = _time_to_sync(len(pending), c)
            agree = stop.agreement_due(step)  # read once: a signal may land any time
            stop_now = not epoch_ends and _stop_requested(stop, agree)
            save_mid_epoch = not epoch_ends and (stop_now or _time_to_checkpoint(step, c))
            if sync or epoch_ends or save_mid_epoch:
                _sync(run, pending, step, tally, pace, line)
                pending = []
                _publish_committed(run, unpublished)
            if save_mid_epoch:
                _save(run, state, schedule, tally.progress(progress))
            if epoch_ends:
                validation_start = time.perf_counter()
                state, schedule, progress, record = _end_epoch(run, state, schedule, progress, step, tally)
                pace.validation_seconds = time.perf_counter() - validation_start
                pace.restart_window(step)
                unpublished.append(record)
                tally = _Tally([], 0, step)
                if record.get("stopped_early"):
                    break
                stop_now = _stop_requested(stop, at_sync_point=True)  # arrived in the last step or validation
            if stop_now:
                _wait_for_saves(run)
                code = 128 + getattr(signal, stop.signal_name)
                message = f"{stop.signal_name}: saved checkpoint at step {step}; run the same command again to resume"
                raise Stopped(message, code)
    finally:
        _wait_for_saves(run)
        _publish_committed(run, unpublished)
    return state


def _sync(run: Run, pending: list, step: int, tally: _Tally, pace: Pace, line: ProgressLine) -> None:
    """Brings the pending step metrics to the host: TensorBoard scalars, the epoch's losses,
    the non-finite check, and the progress report."""
    t = run.config.training
    for j, m in enumerate(jax.device_get(pending)):
        at = step - len(pending) + 1 + j
        if not (math.isfinite(float(m.loss)) and math.isfinite(float(m.grad_norm))) and t.nan_policy == "stop":
            _wait_for_saves(run)
            raise RunFailed(
                f"non-finite loss ({float(m.loss)}) or gradient norm ({float(m.grad_norm)}) at step {at}; "
                f"last good checkpoint: {_latest(run)}. "
                "Lower training.learning_rate, set training.grad_clip_norm, or training.nan_policy=skip"
            )
        run.writer.write_scalars(at, {"train/loss": m.loss, "train/grad_norm": m.grad_norm, "train/lr": m.lr})
        tally.last_lr = float(m.lr)
        if m.skipped:
            tally.skipped += 1
        else:
            tally.losses.append(float(m.loss))
            tally.correct, tally.count = tally.correct + int(m.correct), tally.count + int(m.count)
    now = time.perf_counter()
    window, so_far = (step - pace.window_step, now - pace.window_start), (step - tally.first_step, now - tally.start)
    at = Position(step, run.steps_per_epoch, run.config.training.epochs)
    loss = tally.losses[-1] if tally.losses else math.nan
    line.show(progress_text(at, loss, window, so_far, run.batch_size, pace, line.live))
    pace.restart_window(step)


def _latest(run: Run) -> str:
    step = run.manager.latest_step()
    return "none yet" if step is None else f"step {step} in {run.workdir / 'checkpoints'}"


def _end_epoch(run: Run, state, schedule, progress: Progress, step: int, tally: _Tally):
    """Validates, steps the schedule, tracks the best epoch, writes the scalars and starts the
    epoch-end checkpoint; returns (state, schedule, progress, the epoch's record)."""
    c, epoch = run.config, step // run.steps_per_epoch
    elapsed = time.perf_counter() - tally.start
    val = evaluate(
        state, run.valid, c.data.eval_batch_size, c.data.num_workers, run.parallel, run.task, run.resident_valid
    )
    record = {
        "epoch": epoch,
        "step": step,
        "train_loss": float(np.mean(np.asarray(tally.losses, np.float64))) if tally.losses else math.nan,
        "train_accuracy": tally.correct / tally.count if tally.count else math.nan,
        "val_loss": val.loss,
        **{f"val_{k}": v for k, v in val.metrics.items()},
        # the rate used during the epoch, before the update below; per-step rates: its last step's
        "lr": schedule.lr if step_rate(c.training, run.steps_per_epoch) is None else tally.last_lr,
        "skipped_steps": tally.skipped,
        "images_per_second": (step - tally.first_step) * run.batch_size / elapsed,
        "data_wait_fraction": tally.wait / elapsed,
    }
    schedule = update_schedule(schedule, c.training, val.loss)
    state = state.with_learning_rate(run.parallel.replicate(np.float32(schedule.lr)))  # laid out like the state
    value = record.get(c.checkpoint.best_metric)
    improved = best.improves(value, progress.best_value, c.checkpoint.best_mode)
    progress = Progress(
        best_epoch=epoch if improved else progress.best_epoch,
        best_value=value if improved else progress.best_value,
        history=progress.history,
    )
    stop_reason = early_stopping.mark(record, progress, epoch, c)
    ready = json_ready(record)  # as metrics.jsonl and the checkpoint hold it
    progress = dataclasses.replace(progress, history=(*progress.history, ready))
    run.writer.write_scalars(step, {"train/accuracy": record["train_accuracy"]})
    run.writer.write_scalars(step, {"val/loss": val.loss, **{f"val/{k}": v for k, v in val.metrics.items()}})
    run.writer.write_scalars(step, {f"perf/{k}": record[k] for k in ("images_per_second", "data_wait_fraction")})
    _save(run, state, schedule, progress, ready)
    shown = " ".join(f"{k} {v:.4f}" for k, v in record.items() if k.startswith("val_"))
    log(
        f"epoch {epoch} done: train_loss {record['train_loss']:.4f} train_accuracy {record['train_accuracy']:.4f} "
        f"{shown} lr {record['lr']:.3g} | "
        f"{record['images_per_second']:,.0f} img/s epoch mean, {record['data_wait_fraction']:.0%} waiting for data"
    )
    if stop_reason:
        log(f"stopping early after epoch {epoch} of {c.training.epochs}: {stop_reason}")
    return state, schedule, progress, record


def _save(run: Run, state, schedule, progress: Progress, metrics: dict | None = None) -> None:
    with checkpoint.write_errors(run.workdir):
        checkpoint.save(run.manager, state, schedule, progress, run.config, metrics, run.data_profile)


def _wait_for_saves(run: Run) -> None:
    with checkpoint.write_errors(run.workdir):
        run.manager.wait_until_finished()


def _publish_committed(run: Run, unpublished: list) -> None:
    """Appends to metrics.jsonl (and drops from ``unpublished``) the epoch records that a
    committed checkpoint covers.

    A line in metrics.jsonl is therefore final: a run killed before its first checkpoint
    commits has no lines, and restarts; lines without any checkpoint mean the checkpoints were
    removed, and the run refuses to start over them (resume.check_no_orphaned_results)."""
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


def _summary(workdir: Path, c: ml_collections.ConfigDict) -> dict:
    records = read_metrics(workdir)
    chosen = best.best_record(records, c.best_metric, c.best_mode)
    if chosen:
        shown = ", ".join(f"{k} {v:.4f}" for k, v in chosen.items() if k.startswith("val_") and v is not None)
        log(f"best epoch {chosen['epoch']} by {c.best_metric}: {shown}")
    log(f"run directory: {workdir.resolve()}  (view: tensorboard --logdir {workdir})")
    return {"workdir": str(workdir), "epochs": len(records), "best": chosen, "last": records[-1] if records else None}
