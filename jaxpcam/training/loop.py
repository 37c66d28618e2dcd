"""train_and_evaluate: the one place where data, model, steps, schedule and tracking meet."""

import contextlib
import dataclasses
import math
import os
import signal
import time
from pathlib import Path

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from jaxpcam import best
from jaxpcam import config as config_lib
from jaxpcam.data import open_training_data
from jaxpcam.data import pipeline as pipeline_lib
from jaxpcam.data.stats import cached_channel_stats, intensity_profile
from jaxpcam.errors import RunFailed, Stopped, UserError
from jaxpcam.models import create_model
from jaxpcam.runtime import apply_run_settings
from jaxpcam.task import Task, task_for
from jaxpcam.training import checkpoint, resume, tracking, workdir_lock
from jaxpcam.training.checkpoint import Progress
from jaxpcam.training.parallel import DataParallel, any_process, barrier, is_primary, to_host
from jaxpcam.training.placement import ResidentSplit, place_training_data
from jaxpcam.training.preemption import StopRequest
from jaxpcam.training.schedules import ScheduleState, init_schedule, update_schedule
from jaxpcam.training.state import (
    Normalization,
    TrainState,
    count_params,
    create_train_state,
    fixed_normalization,
    make_optimizer,
    make_streams,
)
from jaxpcam.training.steps import jit_eval_step, jit_train_step
from jaxpcam.training.tracking import log

# Test hook: SIGKILL this process right after the checkpoint save at this step has started.
KILL_AFTER_SAVE_ENV = "JAXPCAM_TEST_KILL_AFTER_SAVE_STEP"


def default_workdir(config: ml_collections.ConfigDict) -> Path:
    return Path("runs") / config.experiment_name / f"seed{config.seed}"


@dataclasses.dataclass(frozen=True)
class EvalResult:
    loss: float
    metrics: dict[str, float]


def evaluate(
    state: TrainState,
    split,
    batch_size: int,
    num_workers: int,
    parallel: DataParallel,
    task: Task,
    resident: ResidentSplit | None = None,
) -> EvalResult:
    """Mean loss (float64 sum over real examples) and metrics over every record of ``split``;
    each process reads its rows of each batch (or, with ``resident``, only their indices), and
    every process gets the same numbers. Outputs come to the host once, after the last batch."""
    outputs = []
    batch_size = parallel.eval_batch_size(batch_size)
    rows = parallel.local_rows(batch_size)
    local_batches = pipeline_lib.eval_dataset(
        split, batch_size=batch_size, num_workers=num_workers, rows=rows, images=resident is None
    )
    for local in local_batches:
        batch = parallel.global_batch(local)
        outputs.append((jit_eval_step(state, batch, resident, task=task), batch["mask"]))
    outputs = to_host(outputs)
    losses = np.concatenate([out.loss[mask] for out, mask in outputs])
    probs = np.concatenate([out.probs[mask] for out, mask in outputs])
    return EvalResult(float(losses.astype(np.float64).mean()), task.metrics(split.labels, probs))


def _normalization(config, data, channels: int) -> Normalization:
    if config.data.normalization == "fixed":
        return fixed_normalization(channels)
    mean, std = cached_channel_stats(data.train, data.stats_key(), list(data.cache_folders), log)
    log(f"train-split channel mean {np.round(mean, 2).tolist()} std {np.round(std, 2).tolist()}")
    return Normalization(jax.numpy.asarray(mean), jax.numpy.asarray(std))


@dataclasses.dataclass
class _Run:
    """What every epoch needs, built once by train_and_evaluate."""

    config: ml_collections.ConfigDict
    workdir: Path
    writer: tracking.RunWriter
    manager: ocp.CheckpointManager
    parallel: DataParallel
    train_fn: object
    dropout_key: jax.Array
    resident: tuple[ResidentSplit | None, ResidentSplit | None]  # train, valid; None with data.placement=host
    steps_per_epoch: int
    stop: StopRequest
    first_step: int
    data_profile: dict
    start_time: float = dataclasses.field(default_factory=time.perf_counter)
    unpublished: list = dataclasses.field(default_factory=list)  # epoch records whose checkpoint may not be committed

    def progress_line(self, epoch: int, step: int, loss: float) -> str:
        total = self.steps_per_epoch * self.config.training.epochs
        elapsed = time.perf_counter() - self.start_time
        rate = max(step - self.first_step, 1) / elapsed if elapsed > 0 else 0.0
        eta = (total - step) / rate if rate > 0 else math.inf
        in_epoch = step - (epoch - 1) * self.steps_per_epoch
        return (
            f"epoch {epoch}/{self.config.training.epochs} step {in_epoch}/{self.steps_per_epoch} (global {step}) "
            f"loss {loss:.4f} {rate * self.config.data.batch_size:.0f} img/s eta {tracking.format_duration(eta)}"
        )

    def stop_requested(self, at_sync_point: bool) -> bool:
        """Whether to stop now. With several processes all must stop at the same step, so the
        flag is agreed on (one tiny all-gather) only at the points where metrics sync anyway."""
        if jax.process_count() == 1:
            return self.stop.requested
        return at_sync_point and any_process(self.stop.requested)

    def save(self, state, schedule, progress, metrics=None) -> None:
        with _checkpoint_errors(self.workdir):
            checkpoint.save(self.manager, state, schedule, progress, self.config, metrics, self.data_profile)
        if os.environ.get(KILL_AFTER_SAVE_ENV) == str(int(state.step)):
            os.kill(os.getpid(), signal.SIGKILL)

    def wait_for_saves(self) -> None:
        with _checkpoint_errors(self.workdir):
            self.manager.wait_until_finished()

    def publish_committed(self) -> None:
        """Appends to metrics.jsonl the epoch records that a committed checkpoint covers.

        A line in metrics.jsonl is therefore final: a run killed before its first checkpoint
        commits has no lines, and restarts; lines without any checkpoint mean the checkpoints
        were removed, and the run refuses to start over them (resume.check_no_orphaned_results)."""
        if not self.unpublished:
            return
        folder = Path(self.manager.directory)
        committed = max((int(p.name) for p in folder.iterdir() if p.name.isdigit()), default=-1)
        ready = [r for r in self.unpublished if r["step"] <= committed]
        with _io_errors(self.workdir):
            for record in ready:
                self.writer.epoch(record)
        self.unpublished = self.unpublished[len(ready) :]

    def stopped(self, step: int) -> Stopped:
        self.wait_for_saves()
        name = self.stop.signal_name
        code = 128 + getattr(signal, name)
        return Stopped(f"{name}: saved checkpoint at step {step}; run the same command again to resume", code)


@contextlib.contextmanager
def _io_errors(workdir: Path):
    try:
        yield
    except OSError as err:
        raise RunFailed(
            f"cannot write to {workdir}: {err.strerror or err}; earlier checkpoints in {workdir / 'checkpoints'} "
            "are intact"
        ) from None


@contextlib.contextmanager
def _checkpoint_errors(workdir: Path):
    """Any failure of an (asynchronous) checkpoint write, e.g. a full disk, which Orbax reports
    as ValueError('RESOURCE_EXHAUSTED ... No space left on device'), ends the run in one line."""
    try:
        yield
    except Exception as err:
        last_line = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        reason = last_line.rsplit(": ", 1)[-1] if len(last_line) > 160 else last_line  # e.g. "File too large"
        raise RunFailed(
            f"writing a checkpoint in {workdir / 'checkpoints'} failed: {reason}; "
            "earlier checkpoints are intact, rerun to resume from the latest one"
        ) from None


def _run_epoch(run: _Run, state, schedule, progress: Progress, batches, epoch: int):
    """Trains the rest of ``epoch``; returns the state and the epoch's train summary.

    Metrics come to the host every log_every_steps steps (one sync). Mid-epoch checkpoints
    carry the epoch's losses so far, so a resumed epoch reports the same train_loss.
    """
    c, t = run.config, run.config.training
    losses, skipped = list(progress.epoch_losses), progress.epoch_skipped
    step = first_step = int(state.step)
    epoch_end = epoch * run.steps_per_epoch
    pending, wait, start = [], 0.0, time.perf_counter()

    def flush() -> None:
        nonlocal pending, skipped
        for j, m in enumerate(jax.device_get(pending)):
            at = step - len(pending) + 1 + j
            finite = math.isfinite(float(m.loss)) and math.isfinite(float(m.grad_norm))
            if not finite and t.nan_policy == "stop":
                run.wait_for_saves()
                raise RunFailed(
                    f"non-finite loss ({float(m.loss)}) or gradient norm ({float(m.grad_norm)}) at step {at}; "
                    f"last good checkpoint: step {run.manager.latest_step()} in {run.workdir / 'checkpoints'}. "
                    "Lower training.learning_rate, set training.grad_clip_norm, or training.nan_policy=skip"
                )
            run.writer.scalars(at, {"train/loss": m.loss, "train/grad_norm": m.grad_norm, "train/lr": m.lr})
            if m.skipped:
                skipped += 1
            else:
                losses.append(float(m.loss))
        pending = []
        log(run.progress_line(epoch, step, losses[-1] if losses else math.nan))
        run.publish_committed()

    while step < epoch_end:
        before = time.perf_counter()
        batch = run.parallel.global_batch(next(batches))
        wait += time.perf_counter() - before
        state, metrics = run.train_fn(state, batch, run.dropout_key, run.resident[0])
        pending.append(metrics)
        step += 1
        sync_point = len(pending) >= t.log_every_steps
        stop_now = run.stop_requested(sync_point) and step < epoch_end  # read once: a signal may land any time
        mid_epoch_save = stop_now or (
            step < epoch_end and c.checkpoint.every_steps and step % c.checkpoint.every_steps == 0
        )
        if sync_point or step == epoch_end or mid_epoch_save:
            flush()
        if mid_epoch_save:
            run.save(state, schedule, dataclasses.replace(progress, epoch_losses=tuple(losses), epoch_skipped=skipped))
        if stop_now:
            raise run.stopped(step)
    elapsed = time.perf_counter() - start
    summary = {
        "train_loss": float(np.mean(np.asarray(losses, np.float64))) if losses else math.nan,
        "skipped_steps": skipped,
        "images_per_second": (step - first_step) * c.data.batch_size / elapsed,
        "data_wait_fraction": wait / elapsed,
    }
    return state, summary


def _start(config, workdir: Path, like: TrainState, manager):
    """(state, schedule, progress, the restored checkpoint or None) to begin from; refuses
    unsafe resumes."""
    restored = resume.restore_latest(manager, like, config, workdir, log)
    if restored is None:
        resume.check_no_orphaned_results(workdir)
        return like, init_schedule(config.training), Progress(), None
    if is_primary():
        with _io_errors(workdir):
            tracking.keep_epochs(workdir, restored.schedule.epochs_done)
    log(f"resuming from checkpoint step {restored.step} (epoch {restored.schedule.epochs_done} done)")
    return restored.state, restored.schedule, restored.progress, restored


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: Path, start_fresh: bool = False) -> dict:
    """Trains ``config`` in ``workdir``, resuming from its latest checkpoint; returns a summary."""
    config_lib.validate(config)
    run_settings = apply_run_settings(config.training)  # before the first JAX computation
    try:
        workdir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create the run directory {workdir}: {err.strerror or err}") from None
    with _workdir_held(workdir):
        return _train_and_evaluate(config, workdir, start_fresh, run_settings)


@contextlib.contextmanager
def _workdir_held(workdir: Path):
    """Process 0 holds the workdir's lock for the job; a refusal stops every process."""
    with contextlib.ExitStack() as stack:
        refusal = None
        if is_primary():
            try:
                stack.enter_context(workdir_lock.held(workdir, log))
            except (UserError, OSError) as err:
                refusal = err if isinstance(err, UserError) else UserError(f"cannot lock {workdir}: {err}")
        if any_process(refusal is not None):
            raise refusal or UserError(f"process 0 of this job could not lock {workdir}; see its log")
        yield


def _train_and_evaluate(config, workdir: Path, start_fresh: bool, run_settings: dict) -> dict:
    parallel = DataParallel.over_all_devices()
    parallel.check_batch_size(config.data.batch_size)
    streams = make_streams(config.seed)
    data = open_training_data(config.data, streams.data_seed, log)
    train, valid = data.train, data.valid
    steps_per_epoch = pipeline_lib.steps_per_epoch(len(train), config.data.batch_size)
    if steps_per_epoch == 0:
        raise UserError(
            f"config key data.batch_size: {config.data.batch_size} is larger than the training split ({len(train)})"
        )
    counts = np.bincount(train.labels).tolist()
    log(f"data {data.files[0].parent}: train {len(train)} (per class {counts}), valid {len(valid)}")
    placement, resident = place_training_data(config.data, data, parallel, log)

    model = create_model(config.model, config.training.dtype)
    norm = _normalization(config, data, data.image_shape[-1])
    fresh = create_train_state(streams.init, model, make_optimizer(config.training), norm, data.image_shape)
    fresh = parallel.replicate(fresh)  # restored checkpoints take this layout too
    log(f"model {config.model.name}: {count_params(fresh.params):,} parameters")
    log(_devices_line(parallel, config.data.batch_size))
    with _io_errors(workdir):
        if start_fresh and is_primary():
            resume.archive_run(workdir, log)
        barrier("archived the earlier run")
        resume.set_aside_damaged(workdir, log)
        manager = checkpoint.open_manager(workdir, config.checkpoint)
    state, schedule, progress, restored = _start(config, workdir, fresh, manager)
    provenance = tracking.provenance(data.files, data.source)
    provenance["data"]["filter"] = data.filter
    provenance.update(run_settings)
    provenance["data"]["placement"] = placement.kind
    provenance["data"]["placement_reason"] = placement.reason
    resumption = None
    if restored is not None:
        resumption = {"from_step": restored.step, "changed": resume.changed_keys(restored.config, config.to_dict())}
    if is_primary() and (restored is None or restored.step < config.training.epochs * steps_per_epoch):
        with _io_errors(workdir):  # a finished run rerun (nothing to train) leaves its record as it is
            tracking.record_run_config(workdir, config, provenance, resumption)
    batches = iter(
        pipeline_lib.train_dataset(
            train,
            batch_size=config.data.batch_size,
            epochs=config.training.epochs,
            data_seed=streams.data_seed,
            augment_seed=streams.augment_seed if config.data.augment else None,
            balanced=config.data.balanced_sampling,
            num_workers=config.data.num_workers,
            prefetch=config.data.prefetch_batches,
            start_step=int(state.step),
            rows=parallel.local_rows(config.data.batch_size),
            images=resident[0] is None,
        )
    )
    writer = tracking.RunWriter(workdir, purge_step=int(state.step) + 1, enabled=is_primary())
    with StopRequest() as stop:
        dropout_key = parallel.replicate(streams.dropout)
        abstract_batch = parallel.abstract_batch(config.data.batch_size, data.image_shape, resident[0] is not None)
        run = _Run(
            config, workdir, writer, manager, parallel,
            _compiled_train_step(state, config, dropout_key, abstract_batch, resident[0]),
            dropout_key, resident, steps_per_epoch, stop, int(state.step), intensity_profile(train),
        )  # fmt: skip
        try:
            for epoch in range(int(state.step) // steps_per_epoch + 1, config.training.epochs + 1):
                state, schedule, progress = _train_and_validate_epoch(
                    run, state, schedule, progress, batches, epoch, valid
                )
                if run.stop_requested(at_sync_point=True):  # arrived in the epoch's last step or evaluation
                    raise run.stopped(int(state.step))
        finally:
            try:
                run.wait_for_saves()
                run.publish_committed()
            finally:
                manager.close()
                writer.close()
    if restored is not None and restored.step == int(state.step):
        done = restored.schedule.epochs_done
        log(f"nothing to do: the run has trained {done} epochs (training.epochs={config.training.epochs})")
    return _summary(workdir, config.checkpoint)


def _train_and_validate_epoch(run: _Run, state, schedule: ScheduleState, progress: Progress, batches, epoch, valid):
    c = run.config
    lr_used = schedule.lr
    state, train_summary = _run_epoch(run, state, schedule, progress, batches, epoch)
    val = evaluate(state, valid, c.data.eval_batch_size, c.data.num_workers, run.parallel, task_for(c), run.resident[1])
    record = {
        "epoch": epoch,
        "step": int(state.step),
        "train_loss": train_summary["train_loss"],
        "val_loss": val.loss,
        **{f"val_{k}": v for k, v in val.metrics.items()},
        "lr": lr_used,
        "skipped_steps": train_summary["skipped_steps"],
        "images_per_second": train_summary["images_per_second"],
        "data_wait_fraction": train_summary["data_wait_fraction"],
    }
    schedule = update_schedule(schedule, c.training, val.loss)
    state = state.with_learning_rate(run.parallel.replicate(np.float32(schedule.lr)))  # laid out like the state
    value = record.get(c.checkpoint.best_metric)
    progress = Progress(best_epoch=progress.best_epoch, best_value=progress.best_value)
    if best.improves(value, progress.best_value, c.checkpoint.best_mode):
        progress = Progress(best_epoch=epoch, best_value=value)
    step = int(state.step)
    run.writer.scalars(step, {"val/loss": val.loss, **{f"val/{k}": v for k, v in val.metrics.items()}})
    run.writer.scalars(step, {f"perf/{k}": record[k] for k in ("images_per_second", "data_wait_fraction")})
    run.save(state, schedule, progress, tracking.json_ready(record))
    run.unpublished.append(record)
    shown = " ".join(f"{k} {v:.4f}" for k, v in record.items() if k.startswith("val_"))
    log(f"epoch {epoch} done: train_loss {record['train_loss']:.4f} {shown} lr {lr_used:.3g}")
    return state, schedule, progress


def _devices_line(parallel: DataParallel, batch_size: int) -> str:
    devices = f"{parallel.num_devices} {jax.devices()[0].platform.upper()} device(s)"
    if jax.process_count() > 1:
        devices += f" in {jax.process_count()} processes (this is process {jax.process_index()})"
    if parallel.num_devices == 1:
        return f"devices: {devices} {jax.devices()}"
    return f"data parallel over {devices}: global batch {batch_size}, {batch_size // parallel.num_devices} per device"


def _compiled_train_step(state, config, dropout_key, batch, resident):
    """Compiles the train step ahead of time, so compile time is logged and not in img/s."""
    start = time.perf_counter()
    skip = config.training.nan_policy == "skip"
    compiled = jit_train_step.lower(state, batch, dropout_key, resident, skip_nonfinite=skip, task=task_for(config))
    compiled = compiled.compile()
    log(f"compiled the train step in {time.perf_counter() - start:.1f} s")
    return compiled


def _summary(workdir: Path, c: ml_collections.ConfigDict) -> dict:
    records = tracking.read_metrics(workdir)
    chosen = best.best_record(records, c.best_metric, c.best_mode)
    if chosen:
        shown = ", ".join(f"{k} {v:.4f}" for k, v in chosen.items() if k.startswith("val_") and v is not None)
        log(f"best epoch {chosen['epoch']} by {c.best_metric}: {shown}")
    log(f"run directory: {workdir.resolve()}  (view: tensorboard --logdir {workdir})")
    return {"workdir": str(workdir), "epochs": len(records), "best": chosen, "last": records[-1] if records else None}
