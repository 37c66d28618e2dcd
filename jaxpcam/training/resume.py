"""Deciding where a run starts: its latest readable checkpoint, or fresh, never losing results.

- A workdir whose config differs in a key that changes results is refused, listing the keys,
  before any checkpoint is read: a different model or optimizer is a different run, not damage.
  Training checks this first (refuse_changed_config), before it opens the data or logs a line.
- A checkpoint that cannot be read back as written (unreadable files, a checksum mismatch, a
  garbled small item) is moved to ``corrupt_checkpoints/`` (kept for inspection, never deleted)
  and the previous one is used.
- ``--start_fresh`` moves everything the earlier run wrote into ``archive/<time>/`` first.
"""

import datetime
import shutil
from pathlib import Path

import jax
import ml_collections
import orbax.checkpoint as ocp

from jaxpcam.core.errors import ConfigChanged, UserError
from jaxpcam.core.reporting import log
from jaxpcam.run import integrity
from jaxpcam.run.keys import result_changes
from jaxpcam.training import checkpoint
from jaxpcam.training.parallel import barrier, is_primary
from jaxpcam.training.state import TrainState

# eval: its thresholds and results, with and without TTA; export: model files made from these checkpoints
RUN_OUTPUTS = ("checkpoints", "metrics.jsonl", "config.json", "eval", "export", "corrupt_checkpoints")


def _timestamp() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")


def archive_run(workdir: Path) -> None:
    """Moves an earlier run's outputs into ``workdir/archive/<time>/``; deletes nothing."""
    present = [p for p in (*(workdir / n for n in RUN_OUTPUTS), *workdir.glob("events.out.tfevents.*")) if p.exists()]
    if not present:
        return
    dest = workdir / "archive" / _timestamp()
    dest.mkdir(parents=True)
    for path in present:
        shutil.move(str(path), dest / path.name)
    log(f"--start_fresh: moved the earlier run's outputs to {dest}")


def _set_aside(workdir: Path, step: int, reason: str) -> None:
    """Moves a damaged checkpoint to ``corrupt_checkpoints/`` (process 0; the others wait)."""
    dest = workdir / "corrupt_checkpoints" / f"{step}-{_timestamp()}"
    if is_primary():
        dest.parent.mkdir(exist_ok=True)
        shutil.move(str(workdir.resolve() / "checkpoints" / str(step)), dest)
    barrier(f"set aside checkpoint {step}")
    log(f"WARNING: checkpoint {step} is damaged ({reason}); moved to {dest.parent}/, trying the previous one")


def set_aside_damaged(workdir: Path) -> None:
    """Sets aside checkpoints whose small JSON files do not parse. Runs before the checkpoint
    manager opens: Orbax reads every checkpoint's metrics then, and one garbled file would stop it."""
    folder = workdir / "checkpoints"
    steps = sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) if folder.is_dir() else []
    for step in steps:
        reason = integrity.small_item_damage(folder / str(step))
        if reason:
            _set_aside(workdir, step, reason)


def _shapes(tree) -> dict[str, tuple]:
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {integrity.leaf_name(path): (tuple(leaf.shape), str(leaf.dtype)) for path, leaf in leaves}


def _check_same_arrays(manager: ocp.CheckpointManager, step: int, like: TrainState, workdir: Path) -> None:
    """Refuses (touching nothing) a checkpoint whose arrays this code does not build for the same
    config, e.g. one written by a jaxpcam version with other layer names."""
    try:
        saved = _shapes(manager.metadata(step).item_metadata["state"])
    except Exception as err:  # unreadable metadata is damage, handled by the restore
        raise integrity.DamagedCheckpoint(f"its array metadata does not read ({type(err).__name__})") from None
    built = _shapes(like)
    if saved != built:
        name = sorted(k for k in saved.keys() | built.keys() if saved.get(k) != built.get(k))[0]
        raise UserError(
            f"checkpoint {step} in {workdir} holds other arrays than this code builds for the same config "
            f"({name}: saved {saved.get(name, 'none')}, built {built.get(name, 'none')}); was it written by "
            "another jaxpcam version? Resume with that version, or pass --start_fresh to archive the run"
        )


def restore_latest(
    manager: ocp.CheckpointManager, like: TrainState, config: ml_collections.ConfigDict, workdir: Path
) -> checkpoint.Restored | None:
    """The newest checkpoint that reads back as written, setting damaged ones aside; None if none.

    Refuses a different config (UserError) before reading any arrays, so that changing the model
    or the optimizer never makes good checkpoints look damaged."""
    for step in sorted(manager.all_steps(), reverse=True):
        try:
            saved = checkpoint.read_verified_json_item(manager, step, "config")
            check_resumable(saved, config, workdir)
            _check_same_arrays(manager, step, like, workdir)
            restored = checkpoint.restore(manager, step, like)
        except integrity.DamagedCheckpoint as err:
            _set_aside(workdir, step, str(err))
            manager.reload()
            continue
        if not restored.verified:
            log(f"checkpoint {step} was written before checkpoints carried checksums: restored unverified")
        return restored
    return None


def refuse_changed_config(
    manager: ocp.CheckpointManager, config: ml_collections.ConfigDict, workdir: Path
) -> dict | None:
    """UserError when the run in ``workdir`` was made with a config that differs in a key that
    changes results: what restore_latest would refuse, said before the data is read or any line
    describes the run. The newest checkpoint whose config reads back as written decides (the
    others differ from it in resumable keys at most); a damaged one is left to restore_latest.
    Returns that config (None: no checkpoint to judge by), for moved_data.check once data opened."""
    for step in sorted(manager.all_steps(), reverse=True):
        try:
            saved = checkpoint.read_verified_json_item(manager, step, "config")
        except integrity.DamagedCheckpoint:
            continue
        check_resumable(saved, config, workdir)
        return saved
    return None


def check_resumable(saved: dict, config: ml_collections.ConfigDict, workdir: Path) -> None:
    differing = list(result_changes(saved, config.to_dict()))
    if differing:
        finding = f"{workdir} holds a run with a different config ({', '.join(differing)})"
        raise ConfigChanged(
            f"{finding}; resume with the same values, choose another --workdir, or pass --start_fresh to archive "
            "that run and begin again",
            finding,
        )


def check_no_orphaned_results(workdir: Path) -> None:
    """Refuses to start over a run that logged epochs but has no readable checkpoint left."""
    path = workdir / "metrics.jsonl"
    if path.is_file() and path.read_text(errors="replace").strip():
        raise UserError(
            f"{workdir} has metrics.jsonl from an earlier run but no readable checkpoint; "
            "pass --start_fresh to archive it and begin again, or choose another --workdir"
        )
