"""Everything a training run needs, built once: data (and where it lives), model and train
state (fresh or resumed), checkpoint manager, run record and writer, and the batch stream."""

import dataclasses
import time
from pathlib import Path

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from jaxpcam.core.errors import UserError
from jaxpcam.core.reporting import MetricWriter, log
from jaxpcam.core.seeds import make_streams
from jaxpcam.core.task import Task, task_for
from jaxpcam.data import open_training_data, transforms
from jaxpcam.data import pipeline as pipeline_lib
from jaxpcam.data.normalization import Normalization, fixed_normalization
from jaxpcam.data.pipeline import release_shared_memory
from jaxpcam.data.profile import intensity_profile
from jaxpcam.data.stats import cached_channel_stats
from jaxpcam.models import create_model
from jaxpcam.run import data_identity as moved_data
from jaxpcam.run.keys import changed_keys
from jaxpcam.run.record import read_metrics, rewrite_metrics
from jaxpcam.training import checkpoint, early_stopping, memory, resume, summary, tracking
from jaxpcam.training.checkpoint import Progress
from jaxpcam.training.parallel import DataParallel, any_process, barrier, is_primary
from jaxpcam.training.placement import ResidentSplit, place_training_data
from jaxpcam.training.schedules import ScheduleState, init_schedule, step_rate
from jaxpcam.training.state import TrainState, create_train_state, make_optimizer
from jaxpcam.training.steps import jit_train_step
from jaxpcam.training.tracking import io_errors


@dataclasses.dataclass
class Run:
    """What the step loop reads; its state, schedule and progress are where training starts."""

    config: ml_collections.ConfigDict
    workdir: Path
    task: Task
    parallel: DataParallel
    manager: ocp.CheckpointManager
    writer: MetricWriter
    batches: object  # iterator of local batches from the current step on
    valid: object
    resident_train: ResidentSplit | None  # None with data.placement=host
    resident_valid: ResidentSplit | None
    augmentations: tuple[transforms.Transform, ...]  # training's, in the order they apply
    image_shape: tuple[int, ...]
    dropout_key: jax.Array
    steps_per_epoch: int
    data_profile: dict
    state: TrainState
    schedule: ScheduleState
    progress: Progress
    restored: checkpoint.Restored | None

    @property
    def total_steps(self) -> int:
        return self.config.training.epochs * self.steps_per_epoch

    @property
    def batch_size(self) -> int:
        return effective_batch_size(self.config)


def _warn_long_warmup(t: ml_collections.ConfigDict, steps_per_epoch: int) -> None:
    """A warmup as long as the run never reaches training.learning_rate: legal, but never meant."""
    total = t.epochs * steps_per_epoch
    if t.warmup_steps >= total:
        peak = t.learning_rate * total / t.warmup_steps
        log(f"WARNING: training.warmup_steps={t.warmup_steps} is not shorter than the run ({total} steps): "
            f"the rate peaks at {peak:.3g}, never training.learning_rate={t.learning_rate:g}")  # fmt: skip


def effective_batch_size(config: ml_collections.ConfigDict) -> int:
    """Records per step (one optimizer update): data.batch_size x training.grad_accum_steps."""
    return config.data.batch_size * config.training.grad_accum_steps


def _weights_lines(t: ml_collections.ConfigDict, batch_size: int) -> list[str]:
    lines = []
    if t.grad_accum_steps > 1:
        k, b = t.grad_accum_steps, batch_size
        lines.append(f"gradient accumulation: {k} micro-batches of {b} per update (effective batch {k * b})")
    if t.ema_decay > 0:
        lines.append(f"validating with EMA weights (decay {t.ema_decay:g})")
    return lines


def _normalization(config, data, channels: int) -> Normalization:
    if config.data.normalization == "fixed":
        return fixed_normalization(channels)
    mean, std = cached_channel_stats(data.train, data.stats_key(), list(data.cache_folders))
    log(f"train-split channel mean {np.round(mean, 2).tolist()} std {np.round(std, 2).tolist()}")
    return Normalization(jax.numpy.asarray(mean), jax.numpy.asarray(std))


def _devices_line(parallel: DataParallel, batch_size: int) -> str:
    devices = f"{parallel.num_devices} {jax.devices()[0].platform.upper()} device(s)"
    if jax.process_count() > 1:
        devices += f" in {jax.process_count()} processes (this is process {jax.process_index()})"
    if parallel.num_devices == 1:
        return f"devices: {devices} {jax.devices()}"
    return f"data parallel over {devices}: global batch {batch_size}, {batch_size // parallel.num_devices} per device"


def _check_memory(config, data, parallel: DataParallel, build) -> None:
    """Refuses in one line, with the numbers, a run whose state and largest batch cannot fit."""
    n = parallel.num_devices
    eval_batch = parallel.eval_batch_size(pipeline_lib.eval_batch_size(config.data.eval_batch_size, len(data.valid)))
    per_device = (effective_batch_size(config) // n, config.data.batch_size // n, eval_batch // n)
    needed = memory.needed_bytes(jax.eval_shape(build), *per_device, data.image_shape)
    refusal = memory.refusal(needed, jax.local_devices())
    if any_process(refusal is not None):  # every process stops, not only the one short of memory
        raise refusal or UserError("another process of this job has too little memory for this run; see its log")


def _open_checkpoints(config, workdir: Path, start_fresh: bool) -> ocp.CheckpointManager:
    with io_errors(workdir):
        if start_fresh and is_primary():
            resume.archive_run(workdir)
        barrier("archived the earlier run")
        resume.set_aside_damaged(workdir)
        return checkpoint.open_manager(workdir, config.checkpoint)


def _start(config, workdir: Path, fresh: TrainState, manager):
    """(state, schedule, progress, the restored checkpoint or None); refuses unsafe resumes."""
    restored = resume.restore_latest(manager, fresh, config, workdir)
    if restored is None:
        resume.check_no_orphaned_results(workdir)
        return fresh, init_schedule(config.training), Progress(), None
    done, progress = restored.schedule.epochs_done, restored.progress
    if progress.history is None:  # written before checkpoints kept the history: trust metrics.jsonl
        kept = tuple(r for r in read_metrics(workdir) if r["epoch"] <= done)
        progress = dataclasses.replace(progress, history=kept)
    if is_primary():
        with io_errors(workdir):  # exactly the epochs the checkpoint covers, whatever the file held
            rewrite_metrics(workdir, progress.history)
    log(f"resuming from checkpoint step {restored.step} (epoch {done} done)")
    return restored.state, restored.schedule, progress, restored


def _steps_per_epoch(config: ml_collections.ConfigDict, data) -> int:
    """Updates per epoch of the training split (a batch larger than the split is refused); logs
    the split sizes."""
    train, valid = data.train, data.valid
    batch_size = effective_batch_size(config)  # what the stream hands each step
    steps_per_epoch = pipeline_lib.steps_per_epoch(len(train), batch_size)
    if steps_per_epoch == 0:
        k = config.training.grad_accum_steps
        what = f"{config.data.batch_size}" + (f" x training.grad_accum_steps {k} = {batch_size}" if k > 1 else "")
        raise UserError(f"config key data.batch_size: {what} is larger than the training split ({len(train)})")
    counts = np.bincount(train.labels).tolist()
    log(f"data {data.files[0].parent}: train {len(train)} (per class {counts}), valid {len(valid)}")
    _warn_long_warmup(config.training, steps_per_epoch)
    return steps_per_epoch


def _record_start(config, workdir: Path, data, placement, run_settings: dict, restored, progress, steps_per_epoch):
    """Writes config.json (provenance, and a resumption's changed keys) when there is training to do."""
    provenance = tracking.provenance(data.files, data.source)
    provenance["data"]["filter"] = data.filter
    if config.data.dir:  # absolute: evaluate finds a relative data.dir from any folder (evaluation.data)
        provenance["data"]["dir"] = str(Path(config.data.dir).expanduser().absolute())
    provenance.update(run_settings)
    provenance["data"]["placement"] = placement.kind
    provenance["data"]["placement_reason"] = placement.reason
    resumption = None
    if restored is not None:
        resumption = {"from_step": restored.step, "changed": changed_keys(restored.config, config.to_dict())}
    to_train = restored is None or (
        restored.step < config.training.epochs * steps_per_epoch
        and not early_stopping.stopped(restored.step, steps_per_epoch, progress, config)
    )
    if is_primary() and to_train:
        with io_errors(workdir):  # a finished run rerun (nothing to train) leaves its record as it is
            tracking.record_run_config(workdir, config, provenance, resumption)


def prepare(config: ml_collections.ConfigDict, workdir: Path, start_fresh: bool, run_settings: dict) -> Run:
    # A resume opens its checkpoints first and refuses a changed config before the data is read or
    # a line describes the run; a new run opens them (creating checkpoints/) only once the data has
    # opened, and --start_fresh archives the earlier run only then (a mistake in data.dir leaves
    # the workdir as it was).
    resuming = not start_fresh and (workdir / "checkpoints").is_dir()
    manager = _open_checkpoints(config, workdir, start_fresh) if resuming else None
    try:
        saved = resume.refuse_changed_config(manager, config, workdir) if manager is not None else None
        parallel = DataParallel.over_all_devices()
        parallel.check_batch_size(config.data.batch_size)
        streams = make_streams(config.seed)
        data = open_training_data(config.data, streams.data_seed)
        if saved is not None:  # a resume: moved data must be the files it trained on
            moved_data.check(workdir, saved, config.to_dict(), data.files, data.filter)
        steps_per_epoch = _steps_per_epoch(config, data)
        augmentations = transforms.enabled(config.data)
        placement, (resident_train, resident_valid) = place_training_data(config.data, data, parallel, augmentations)

        model = create_model(config.model, config.training.dtype)
        norm = _normalization(config, data, data.image_shape[-1])
        tx, ema_decay = make_optimizer(config.training), config.training.ema_decay
        build = lambda: create_train_state(streams.init, model, tx, norm, data.image_shape, ema_decay)  # noqa: E731
        _check_memory(config, data, parallel, build)  # before anything large is allocated
        fresh = build()
        fresh = parallel.replicate(fresh)  # restored checkpoints take this layout too
        log(_devices_line(parallel, config.data.batch_size))
        if manager is None:
            manager = _open_checkpoints(config, workdir, start_fresh)
        state, schedule, progress, restored = _start(config, workdir, fresh, manager)
        for line in _weights_lines(config.training, config.data.batch_size):  # only once the run goes ahead
            log(line)
        _record_start(config, workdir, data, placement, run_settings, restored, progress, steps_per_epoch)
    except BaseException:
        if manager is not None:
            manager.close()
        raise
    batches = _train_batches(config, data, streams, parallel, int(state.step), resident_train is None, augmentations)
    return Run(
        config=config,
        workdir=workdir,
        task=task_for(config),
        parallel=parallel,
        manager=manager,
        writer=MetricWriter(workdir, purge_step=int(state.step) + 1, enabled=is_primary()),
        batches=iter(batches),
        valid=data.valid,
        resident_train=resident_train,
        resident_valid=resident_valid,
        augmentations=augmentations,
        image_shape=data.image_shape,
        dropout_key=parallel.replicate(streams.dropout),
        steps_per_epoch=steps_per_epoch,
        data_profile=intensity_profile(data.train),
        state=state,
        schedule=schedule,
        progress=progress,
        restored=restored,
    )


def close(run: Run) -> None:
    """Ends a run's workers, checkpoint writes and TensorBoard file, whatever stopped it; a
    checkpoint write that failed (a full disk) leaves no temporary folder behind."""
    run.batches.close()  # stops Grain's workers and frees the batches they prefetched (shared memory)
    release_shared_memory()
    try:
        run.manager.close()
    finally:
        checkpoint.remove_partial_saves(run.workdir)
        try:
            run.writer.close()  # flushes TensorBoard events: may meet the full disk that stopped the run
        except OSError as err:
            log(f"WARNING: could not finish the TensorBoard file in {run.workdir}: {err.strerror or err}")


def _train_batches(config, data, streams, parallel, start_step: int, images: bool, augmentations):
    """The Grain pipeline of training batches from ``start_step`` on (``images``: False when the
    images are on the device and batches carry indices)."""
    batch_size = effective_batch_size(config)
    return pipeline_lib.train_dataset(
        data.train,
        batch_size=batch_size,
        epochs=config.training.epochs,
        data_seed=streams.data_seed,
        augment_seed=streams.augment_seed,
        balanced=config.data.balanced_sampling,
        num_workers=config.data.num_workers,
        prefetch=config.data.prefetch_batches,
        start_step=start_step,
        rows=parallel.local_rows(batch_size),
        images=images,
        transforms=augmentations,
    )


def compile_train_step(run: Run):
    """Compiles the train step ahead of time, so compile time is logged and not in img/s."""
    start, c = time.perf_counter(), run.config
    skip = run.config.training.nan_policy == "skip"
    abstract_batch = run.parallel.abstract_batch(
        run.batch_size, run.image_shape, run.resident_train is not None, run.augmentations
    )
    static = {"skip_nonfinite": skip, "task": run.task, "step_rate": step_rate(c.training, run.steps_per_epoch)}
    static["accum_steps"] = c.training.grad_accum_steps
    lowered = jit_train_step.lower(run.state, abstract_batch, run.dropout_key, run.resident_train, **static)
    compiled = lowered.compile()
    log(f"compiled the train step in {time.perf_counter() - start:.1f} s")
    # per micro-batch: XLA's cost analysis counts a lax.scan body (one micro-batch) once, not k times
    log(summary.summary_line(c.model.name, run.state.params, compiled, c.data.batch_size, run.parallel.num_devices))
    return compiled
