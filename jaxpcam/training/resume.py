"""Deciding where a run starts: its latest readable checkpoint, or fresh, never losing results.

- A checkpoint that cannot be read is moved to ``corrupt_checkpoints/`` (kept for inspection,
  never deleted) and the previous one is used.
- A workdir whose config differs in a key that changes results is refused, listing the keys.
- ``--start_fresh`` moves everything the earlier run wrote into ``archive/<time>/`` first.
"""

import datetime
import shutil
from pathlib import Path

import ml_collections
import orbax.checkpoint as ocp

from jaxpcam.errors import UserError
from jaxpcam.training import checkpoint, tracking
from jaxpcam.training.state import TrainState

# Keys that may change between a run and its resumption without changing its results.
RESUMABLE_KEYS = frozenset(
    {
        "training.epochs",
        "training.log_every_steps",
        "data.num_workers",
        "data.prefetch_batches",
        "data.in_memory",
        "data.placement",
        "data.eval_batch_size",
        "checkpoint.keep",
        "checkpoint.every_steps",
    }
)
RUN_OUTPUTS = ("checkpoints", "metrics.jsonl", "config.json")


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = tuple(value) if isinstance(value, list) else value
    return out


def config_differences(saved: dict, current: dict) -> list[str]:
    """Keys whose values differ, except those in RESUMABLE_KEYS. A key the saved config lacks
    (a run made before the key existed) counts as having its default value."""
    from jaxpcam.config import base_config

    a, b = {**_flatten(base_config().to_dict()), **_flatten(saved)}, _flatten(current)
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k) and k not in RESUMABLE_KEYS)


def _timestamp() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")


def archive_run(workdir: Path, log) -> None:
    """Moves an earlier run's outputs into ``workdir/archive/<time>/``; deletes nothing."""
    present = [p for p in (*(workdir / n for n in RUN_OUTPUTS), *workdir.glob("events.out.tfevents.*")) if p.exists()]
    if not present:
        return
    dest = workdir / "archive" / _timestamp()
    dest.mkdir(parents=True)
    for path in present:
        shutil.move(str(path), dest / path.name)
    log(f"--start_fresh: moved the earlier run's outputs to {dest}")


def restore_latest(manager: ocp.CheckpointManager, like: TrainState, workdir: Path, log) -> checkpoint.Restored | None:
    """The newest checkpoint that reads back, moving unreadable ones aside; None if there are none."""
    for step in sorted(manager.all_steps(), reverse=True):
        try:
            return checkpoint.restore(manager, step, like)
        except Exception as err:  # any failure to read means "corrupt": fall back
            dest = workdir / "corrupt_checkpoints" / f"{step}-{_timestamp()}"
            dest.parent.mkdir(exist_ok=True)
            shutil.move(str(workdir.resolve() / "checkpoints" / str(step)), dest)
            manager.reload()
            reason = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
            log(f"WARNING: checkpoint {step} is unreadable ({reason}); moved to {dest}, trying the previous one")
    return None


def check_resumable(saved: dict, config: ml_collections.ConfigDict, workdir: Path) -> None:
    differing = config_differences(saved, config.to_dict())
    if differing:
        raise UserError(
            f"{workdir} holds a run with a different config ({', '.join(differing)}); resume with the same "
            "values, choose another --workdir, or pass --start_fresh to archive that run and begin again"
        )


def check_no_orphaned_results(workdir: Path) -> None:
    """Refuses to start over a run that logged epochs but has no readable checkpoint left."""
    if tracking.read_metrics(workdir):
        raise UserError(
            f"{workdir} has metrics.jsonl from an earlier run but no readable checkpoint; "
            "pass --start_fresh to archive it and begin again, or choose another --workdir"
        )
