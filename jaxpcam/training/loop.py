"""train_and_evaluate: the one place where data, model, steps, schedule and tracking meet."""

import dataclasses
import math
import time
from pathlib import Path

import jax
import ml_collections
import numpy as np

from jaxpcam import config as config_lib
from jaxpcam.data import open_split, resolve_data_dir
from jaxpcam.data import pipeline as pipeline_lib
from jaxpcam.data.pcam import data_files
from jaxpcam.data.stats import channel_stats
from jaxpcam.errors import RunFailed, UserError
from jaxpcam.evaluation.metrics import classification_metrics
from jaxpcam.models import create_model
from jaxpcam.training import checkpoint, tracking
from jaxpcam.training.schedules import init_schedule, update_schedule
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

# Keys that may change between a run and its resumption without changing its results.
RESUMABLE_KEYS = frozenset(
    {
        "training.epochs",
        "training.log_every_steps",
        "data.num_workers",
        "data.prefetch_batches",
        "data.eval_batch_size",
        "checkpoint.keep",
    }
)


def default_workdir(config: ml_collections.ConfigDict) -> Path:
    return Path("runs") / config.experiment_name / f"seed{config.seed}"


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = tuple(value) if isinstance(value, list) else value
    return out


def config_differences(saved: dict, current: dict) -> list[str]:
    """Keys whose values differ, except those in RESUMABLE_KEYS."""
    a, b = _flatten(saved), _flatten(current)
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k) and k not in RESUMABLE_KEYS)


@dataclasses.dataclass(frozen=True)
class EvalResult:
    loss: float
    metrics: dict[str, float]


def evaluate(state: TrainState, split, batch_size: int, num_workers: int = 0) -> EvalResult:
    """Mean loss (float64 sum over real examples) and metrics over every record of ``split``."""
    losses, probs = [], []
    for batch in pipeline_lib.eval_dataset(split, batch_size=batch_size, num_workers=num_workers):
        out = jax.device_get(jit_eval_step(state, batch))
        losses.append(out.loss[batch["mask"]])
        probs.append(out.probs[batch["mask"]])
    loss = float(np.concatenate(losses).astype(np.float64).mean())
    return EvalResult(loss, classification_metrics(split.labels, np.concatenate(probs)))


def _normalization(config, train) -> Normalization:
    if config.data.normalization == "fixed":
        return fixed_normalization()
    mean, std = channel_stats(train)
    log(f"train-split channel mean {np.round(mean, 2).tolist()} std {np.round(std, 2).tolist()}")
    return Normalization(jax.numpy.asarray(mean), jax.numpy.asarray(std))


def _best_epoch(records: list[dict]) -> dict | None:
    key = "val_roc_auc" if any(r.get("val_roc_auc") is not None for r in records) else "val_accuracy"
    scored = [r for r in records if r.get(key) is not None]
    return max(scored, key=lambda r: r[key]) if scored else None


class _Progress:
    """A periodic line with epoch, step, loss, images/second and ETA for the whole run."""

    def __init__(self, total_steps: int, batch_size: int, first_step: int):
        self.total, self.batch_size = total_steps, batch_size
        self.start_time, self.start_step = time.perf_counter(), first_step

    def line(self, epoch: int, epochs: int, step: int, step_in_epoch: int, steps_per_epoch: int, loss: float) -> str:
        elapsed = time.perf_counter() - self.start_time
        done = max(step - self.start_step, 1)
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - step) / rate if rate > 0 else math.inf
        return (
            f"epoch {epoch}/{epochs} step {step_in_epoch}/{steps_per_epoch} (global {step}) "
            f"loss {loss:.4f} {rate * self.batch_size:.0f} img/s eta {tracking.format_duration(eta)}"
        )


def _run_epoch(state, batches, train_fn, dropout_key, *, steps, epoch, config, writer, progress):
    """One epoch of jitted steps; metrics come to the host every log_every_steps (one sync)."""
    t = config.training
    pending, losses, wait = [], [], 0.0
    start = time.perf_counter()
    for i in range(steps):
        before = time.perf_counter()
        batch = next(batches)
        wait += time.perf_counter() - before
        state, metrics = train_fn(state, batch, dropout_key)
        pending.append(metrics)
        if len(pending) == t.log_every_steps or i == steps - 1:
            host = jax.device_get(pending)
            last_step = int(state.step)
            for j, m in enumerate(host):
                step = last_step - len(host) + 1 + j
                if not (math.isfinite(float(m.loss)) and math.isfinite(float(m.grad_norm))):
                    raise RunFailed(
                        f"non-finite loss ({float(m.loss)}) or gradient norm ({float(m.grad_norm)}) at step {step}; "
                        "lower training.learning_rate or set training.grad_clip_norm"
                    )
                writer.scalars(step, {"train/loss": m.loss, "train/grad_norm": m.grad_norm, "train/lr": m.lr})
                losses.append(float(m.loss))
            pending = []
            log(progress.line(epoch, t.epochs, last_step, i + 1, steps, losses[-1]))
    elapsed = time.perf_counter() - start
    train_summary = {
        "train_loss": float(np.mean(np.asarray(losses, np.float64))),
        "images_per_second": steps * config.data.batch_size / elapsed,
        "data_wait_fraction": wait / elapsed,
    }
    return state, train_summary


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: Path) -> dict:
    """Trains ``config`` in ``workdir`` (resuming from its latest checkpoint); returns a summary."""
    config_lib.validate(config)
    workdir.mkdir(parents=True, exist_ok=True)
    data_dir, data_source = resolve_data_dir(config.data.dir, log)
    train, valid = open_split(data_dir, "train"), open_split(data_dir, "valid")
    steps_per_epoch = pipeline_lib.steps_per_epoch(len(train), config.data.batch_size)
    if steps_per_epoch == 0:
        raise UserError(
            f"config key data.batch_size: {config.data.batch_size} is larger than the training split ({len(train)})"
        )
    log(f"data {data_dir}: train {len(train)} ({train.labels.mean():.1%} positive), valid {len(valid)}")

    streams = make_streams(config.seed)
    model = create_model(config.model, config.training.dtype)
    state = create_train_state(streams.init, model, make_optimizer(config.training), _normalization(config, train))
    schedule = init_schedule(config.training)
    log(f"model {config.model.name}: {count_params(state.params):,} parameters, devices {jax.devices()}")

    manager = checkpoint.open_manager(workdir, config.checkpoint.keep)
    latest = manager.latest_step()
    if latest is not None:
        state, schedule, saved_config = checkpoint.restore(manager, latest, state)
        differing = config_differences(saved_config, config.to_dict())
        if differing:
            raise UserError(
                f"{workdir} holds a run with a different config ({', '.join(differing)}); "
                "resume with the same values or choose another --workdir"
            )
        tracking.keep_epochs(workdir, schedule.epochs_done)
        log(f"resuming from checkpoint step {latest} (epoch {schedule.epochs_done})")
    start_epoch = schedule.epochs_done
    tracking.write_run_config(
        workdir, config, tracking.provenance(data_files(data_dir, ("train", "valid", "test")), data_source)
    )

    writer = tracking.RunWriter(workdir, purge_step=int(state.step) + 1 if latest is not None else None)
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
        )
    )
    total_steps = steps_per_epoch * config.training.epochs
    progress = _Progress(total_steps, config.data.batch_size, int(state.step))
    train_fn = _compiled_train_step(state, config, streams.dropout)
    try:
        for epoch in range(start_epoch + 1, config.training.epochs + 1):
            lr_used = schedule.lr
            state, train_summary = _run_epoch(
                state, batches, train_fn, streams.dropout,
                steps=steps_per_epoch, epoch=epoch, config=config, writer=writer, progress=progress,
            )  # fmt: skip
            val = evaluate(state, valid, config.data.eval_batch_size, config.data.num_workers)
            record = {
                "epoch": epoch,
                "step": int(state.step),
                "train_loss": train_summary["train_loss"],
                "val_loss": val.loss,
                **{f"val_{k}": v for k, v in val.metrics.items()},
                "lr": lr_used,
                "images_per_second": train_summary["images_per_second"],
                "data_wait_fraction": train_summary["data_wait_fraction"],
            }
            schedule = update_schedule(schedule, config.training, val.loss)
            state = state.with_learning_rate(schedule.lr)
            writer.scalars(int(state.step), {"val/loss": val.loss, **{f"val/{k}": v for k, v in val.metrics.items()}})
            writer.scalars(int(state.step), {"perf/images_per_second": record["images_per_second"]})
            writer.epoch(record)
            checkpoint.save(manager, state, schedule, config, record)
            shown = " ".join(f"{k} {v:.4f}" for k, v in record.items() if k.startswith("val_"))
            log(f"epoch {epoch} done: train_loss {record['train_loss']:.4f} {shown} lr {lr_used:.3g}")
    finally:
        manager.wait_until_finished()
        manager.close()
        writer.close()
    return _summary(workdir)


def _compiled_train_step(state, config, dropout_key):
    """Compiles the train step ahead of time, so compile time is logged and not in img/s."""
    batch = {
        "image": jax.ShapeDtypeStruct((config.data.batch_size, 96, 96, 3), np.uint8),
        "label": jax.ShapeDtypeStruct((config.data.batch_size,), np.int32),
        "mask": jax.ShapeDtypeStruct((config.data.batch_size,), np.bool_),
    }
    start = time.perf_counter()
    compiled = jit_train_step.lower(state, batch, dropout_key).compile()
    log(f"compiled the train step in {time.perf_counter() - start:.1f} s")
    return compiled


def _summary(workdir: Path) -> dict:
    records = tracking.read_metrics(workdir)
    best = _best_epoch(records)
    summary = {"workdir": str(workdir), "epochs": len(records), "best": best, "last": records[-1] if records else None}
    if best:
        shown = ", ".join(f"{k} {v:.4f}" for k, v in best.items() if k.startswith("val_") and v is not None)
        log(f"best epoch {best['epoch']}: {shown}")
    log(f"run directory: {workdir.resolve()}  (view: tensorboard --logdir {workdir})")
    return summary
