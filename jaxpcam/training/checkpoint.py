"""Orbax checkpoints: each step holds the train state, the schedule, the run's progress, the data
position, the config, the training data's intensity profile (for drift checks at inference) and
(at epoch ends) that epoch's metrics, so a checkpoint alone says how it
was made and a resumed run continues bit for bit.

Saves run on Orbax's background thread on an accelerator and on the training thread on the CPU
(``saves_in_background``). Either way Orbax writes into a temporary directory and renames it into place only
when complete, so a killed run never leaves a half-written checkpoint that looks finished (the
leftover temporary directory is removed when the manager next opens). Old checkpoints are
deleted only after a newer one is complete. Kept (``retention``): the newest checkpoint, whatever
it is (what resume needs); the latest ``checkpoint.keep`` epoch-end checkpoints; and the best
epoch by ``checkpoint.best_metric``. A mid-epoch checkpoint therefore never evicts an epoch-end
one, and is dropped once a newer checkpoint is complete.
"""

import contextlib
import dataclasses
import shutil
from pathlib import Path

import jax
import ml_collections
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies

from jaxpcam.core.errors import RunFailed
from jaxpcam.run import best, integrity
from jaxpcam.run.checkpoint_items import (  # noqa: F401 (re-exported for training code)
    ITEMS,
    handler_registry,
    has_checksums,
    has_item,
    read_json_item,
    read_verified_json_item,
    restore_verified,
)
from jaxpcam.training.parallel import is_primary
from jaxpcam.training.schedules import ScheduleState
from jaxpcam.training.state import TrainState


@dataclasses.dataclass(frozen=True)
class Progress:
    """Host-side run state that a mid-epoch resume needs to finish the epoch identically."""

    epoch_losses: tuple[float, ...] = ()  # per-step train losses of the unfinished epoch
    epoch_skipped: int = 0  # steps of the unfinished epoch skipped by nan_policy='skip'
    epoch_correct: int = 0  # the unfinished epoch's correctly classified training images (train_accuracy)
    epoch_count: int = 0  # and all its training images (skipped steps excluded)
    best_epoch: int | None = None
    best_value: float | None = None
    # Every finished epoch's metrics.jsonl record, so a resumed run rewrites metrics.jsonl from
    # the checkpoint it resumes from (None: a checkpoint written before this was kept).
    history: tuple[dict, ...] | None = ()

    def to_dict(self) -> dict:
        history = None if self.history is None else list(self.history)
        return {**dataclasses.asdict(self), "epoch_losses": list(self.epoch_losses), "history": history}

    @classmethod
    def from_dict(cls, d: dict) -> "Progress":
        history = None if d.get("history") is None else tuple(d["history"])
        return cls(**{**d, "epoch_losses": tuple(d["epoch_losses"]), "history": history})


def _ranking(metric: str, mode: str):
    """best.rank for Orbax's BestN (which keeps the highest): ties go to the earliest step, so
    the best checkpoint kept is the one the training summary and evaluate name."""

    def ranking(metrics: dict) -> tuple:
        return best.rank(metrics.get(metric), metrics.get("step", 0), mode)

    return ranking


@contextlib.contextmanager
def write_errors(workdir: Path):
    """Any failure of an (asynchronous) checkpoint write, e.g. a full disk, which Orbax reports
    as ValueError('RESOURCE_EXHAUSTED ... No space left on device'), ends the run in one line."""
    try:
        yield
    except Exception as err:
        last_line = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        reason = last_line.rsplit(": ", 1)[-1] if len(last_line) > 160 else last_line  # e.g. "File too large"
        remove_partial_saves(workdir)  # never complete: free the space
        raise RunFailed(
            f"writing a checkpoint in {workdir / 'checkpoints'} failed: {reason}; "
            "earlier checkpoints are intact, rerun to resume from the latest one"
        ) from None


def remove_partial_saves(workdir: Path) -> None:
    """Removes the temporary folders of checkpoint writes that never completed (a full disk, a
    kill): ours, since the caller holds the run's lock (process 0; the others leave it to it)."""
    if not is_primary():
        return
    for partial in (workdir / "checkpoints").glob("*.orbax-checkpoint-tmp*"):
        shutil.rmtree(partial, ignore_errors=True)


@dataclasses.dataclass(frozen=True)
class LatestEpochEnds:
    """An Orbax preservation policy: the latest ``n`` checkpoints that hold epoch metrics
    (mid-epoch checkpoints hold none)."""

    n: int

    def should_preserve(self, checkpoints, *, context=None) -> list[bool]:
        epoch_ends = [i for i, info in enumerate(checkpoints) if info.metrics]
        kept = set(epoch_ends[-self.n :])
        return [i in kept for i in range(len(checkpoints))]


def retention(c: ml_collections.ConfigDict):
    """What a run keeps: the newest checkpoint (resume), the latest ``c.keep`` epoch ends, the best."""
    best = policies.BestN(
        get_metric_fn=_ranking(c.best_metric, c.best_mode),  # BestN keeps the *last* n after sorting
        n=1,
        keep_checkpoints_without_metrics=False,
    )
    return policies.AnyPreservationPolicy([policies.LatestN(1), LatestEpochEnds(c.keep), best])


# Where a save runs on Orbax's background thread, per platform (measured: benchmarks/README.md,
# "Several seeds in one program"). On an accelerator the host is idle while the device steps, so
# the write overlaps training. On the CPU the host is the device: a background writer takes the
# cores and the interpreter from the step, and a group of members starts its saves in a burst.
SAVES_IN_BACKGROUND = {"cpu": False}


def saves_in_background() -> bool:
    return SAVES_IN_BACKGROUND.get(jax.default_backend(), True)


def open_manager(workdir: Path, c: ml_collections.ConfigDict) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(
        enable_async_checkpointing=saves_in_background(),
        preservation_policy=retention(c),
        create=True,
        cleanup_tmp_directories=True,
        enable_background_delete=True,  # a retired checkpoint is removed off the training thread
    )
    folder = workdir.resolve() / "checkpoints"
    return ocp.CheckpointManager(folder, options=options, handler_registry=handler_registry())


def save(
    manager: ocp.CheckpointManager,
    state: TrainState,
    schedule: ScheduleState,
    progress: Progress,
    config: ml_collections.ConfigDict,
    metrics: dict | None,
    data_profile: dict,
) -> None:
    """Saves (or, in the background, starts saving) ``state.step``; ``metrics`` only at epoch ends."""
    step = int(state.step)
    items = {
        "schedule": schedule.to_dict(),
        "progress": progress.to_dict(),
        # The stream is a pure function of (seeds, position): the next step is its full state.
        "data": {
            "next_step": step,
            "batch_size": config.data.batch_size * config.training.grad_accum_steps,
            "checksummed": True,
        },
        "config": config.to_dict(),
        "metrics": metrics or {},
        "data_profile": data_profile,
    }
    sums = integrity.checksums(state, items)  # before the step donates the state's buffers
    started = manager.save(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            **{name: ocp.args.JsonSave(value) for name, value in items.items()},
            checksums=ocp.args.JsonSave(sums),
        ),
        metrics=metrics,
    )
    if not started:
        raise RuntimeError(f"Orbax declined to save step {step} (latest is {manager.latest_step()})")


@dataclasses.dataclass(frozen=True)
class Restored:
    step: int
    state: TrainState
    schedule: ScheduleState
    progress: Progress
    config: dict
    verified: bool  # False: written before checkpoints carried checksums


def restore(manager: ocp.CheckpointManager, step: int, like: TrainState) -> Restored:
    """The checkpoint at ``step``, its arrays laid out like ``like`` (so on this host's devices,
    whatever device kind wrote it), checked against the checksums it carries.

    Raises DamagedCheckpoint when it cannot be read back as written."""
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    state, items, verified = restore_verified(manager, step, abstract)
    try:
        schedule, progress = ScheduleState.from_dict(items["schedule"]), Progress.from_dict(items["progress"])
    except (KeyError, TypeError) as err:  # an item missing, or of another shape
        raise integrity.DamagedCheckpoint(integrity.describe_failure(err)) from None
    return Restored(step, state, schedule, progress, items["config"], verified)
