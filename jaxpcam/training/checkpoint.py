"""Orbax checkpoints: each step holds the train state, the schedule, the data position, the
config and that epoch's metrics, so a checkpoint alone says how it was made.

Saves are asynchronous; Orbax renames a step directory into place only when it is complete,
so a killed run never leaves a half-written checkpoint that looks finished.
"""

from pathlib import Path

import jax
import ml_collections
import orbax.checkpoint as ocp

from jaxpcam.training.schedules import ScheduleState
from jaxpcam.training.state import TrainState

ITEMS = ("state", "schedule", "data", "config", "metrics")


def open_manager(workdir: Path, keep: int) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
    return ocp.CheckpointManager(workdir.resolve() / "checkpoints", options=options, item_names=ITEMS)


def save(
    manager: ocp.CheckpointManager,
    state: TrainState,
    schedule: ScheduleState,
    config: ml_collections.ConfigDict,
    metrics: dict,
) -> None:
    step = int(state.step)
    manager.save(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            schedule=ocp.args.JsonSave(schedule.to_dict()),
            # The stream is a pure function of (seeds, position): the next step is its full state.
            data=ocp.args.JsonSave({"next_step": step, "batch_size": config.data.batch_size}),
            config=ocp.args.JsonSave(config.to_dict()),
            metrics=ocp.args.JsonSave(metrics),
        ),
    )


def restore(manager: ocp.CheckpointManager, step: int, like: TrainState) -> tuple[TrainState, ScheduleState, dict]:
    """The state (shaped like ``like``), schedule and saved config dict at ``step``."""
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    restored = manager.restore(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract),
            schedule=ocp.args.JsonRestore(),
            config=ocp.args.JsonRestore(),
        ),
    )
    return restored.state, ScheduleState.from_dict(restored.schedule), restored.config
