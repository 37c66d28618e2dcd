"""Running one sweep point: whether it needs training now, and its sweep_point.json record
around the attempt. (The command and its flags are jaxpcam/sweep.py.)

Training is handed in (``train``, e.g. ``jaxpcam.training.loop.train_and_evaluate``): sweeps
decide what to run and record it, training is a layer of its own that sweeps do not import."""

from collections.abc import Callable
from pathlib import Path

import ml_collections

from jaxpcam.core.errors import ConfigChanged, RunFailed, RunInUse, Stopped, UserError
from jaxpcam.core.reporting import count, log
from jaxpcam.run.record import read_sweep_point
from jaxpcam.sweeps.status import (
    mark_refused,
    other_config,
    point_epochs,
    point_status,
    refused_by_training,
    write_status,
)

Train = Callable[[ml_collections.ConfigDict, Path], object]  # trains a config in a run directory, resuming


def log_sweep(message: str) -> None:
    log(f"sweep: {message}")


def skip_reason(status: str, finished: int, wanted: int) -> str | None:
    """Why a point needs no training now, or None. A point done at fewer epochs than this
    command's config asks for (an earlier --config.training.epochs=1) is trained on."""
    if status == "running":
        return "is running (a live process holds its run.lock): skipped"
    if status == "done" and finished >= wanted:
        return f"is done: skipped ({count(finished, 'epoch')})"
    return None


def _show(keys: dict[str, list]) -> str:
    return ", ".join(f"{k} {then!r} there, {now!r} now" for k, (then, now) in keys.items())


def refuse_other_configs(todo, sweep_dir: Path) -> None:
    """One UserError, before any point runs, when a point to run was run with a config that
    differs from this command's in a key that changes results (status.other_config): its
    folder is named by the grid values alone, so another base (--config.x=y) would land on it."""
    found = [(p, other_config(p, sweep_dir / p.name)) for p in todo]
    found = [(p, keys) for p, keys in found if keys]
    if not found:
        return
    named = ", ".join(f"{p.index} ({p.name})" for p, _ in found[:5]) + (" ..." if len(found) > 5 else "")
    keys = {k: v for _, other in reversed(found) for k, v in other.keys.items()}  # the first point's values win
    were = "was" if len(found) == 1 else "were"
    replaced = any(other.files_replaced for _, other in found)
    it = "it was" if len(found) == 1 else "they were"
    advice = f"restore the files {it} run on" if replaced else f"pass the same --config overrides as {it} run with"
    raise UserError(
        f"{count(len(found), 'point')} in {sweep_dir} ({named}) {were} run with another config "
        f"({_show(dict(sorted(keys.items())))}): {advice}, or choose another --sweep_dir for this one"
    )


def start_point(point, sweep_dir: Path) -> tuple[str | None, dict]:
    """Decides whether ``point`` trains now: (its status, when it is skipped, else None; its
    sweep_point.json as it was). A point that trains is recorded as running."""
    run_dir = sweep_dir / point.name
    status = point_status(point, run_dir)
    if status == "other config" and not refused_by_training(point, run_dir):  # never trained on here
        keys = _show(other_config(point, run_dir).keys)
        log_sweep(f"point {point.index} ({point.name}) was run with another config ({keys}): skipped")
        return status, None
    finished, wanted = point_epochs(point, run_dir)[0], point.config.training.epochs
    reason = skip_reason(status, finished, wanted)
    if reason:
        log_sweep(f"point {point.index} ({point.name}) {reason}")
        return status, None
    doing = "starting" if status == "not started" else f"resuming ({finished} of {wanted} epochs done)"
    if status == "done":  # a run that stopped early trains on only if its patience was raised
        doing = f"done at {count(finished, 'epoch')}; training on to training.epochs={wanted} (unless it stopped early)"
    log_sweep(f"point {point.index} ({point.name}): {doing} in {run_dir}")
    before = read_sweep_point(run_dir)
    write_status(point, run_dir, "running")
    return None, before


def point_other_config(point, sweep_dir: Path, before: dict, err: ConfigChanged) -> str:
    """Training refused it: its checkpoints hold another config, which neither its config.json nor
    its record said. The record goes back to what it was, marked (status.mark_refused)."""
    mark_refused(point, sweep_dir / point.name, before, err.finding)
    log_sweep(
        f"point {point.index} ({point.name}) was run with another config: {err.finding}; move that run "
        "aside or choose another --sweep_dir"
    )
    return "other config"


def point_in_use(point, err: RunInUse) -> str:
    """Another process trains it now (it took the lock after this command looked): its record
    says 'running', as this command wrote it, and the point is left to that process."""
    log_sweep(f"point {point.index} ({point.name}) is being trained by another process: skipped ({err.finding})")
    return "running"


def point_failed(point, sweep_dir: Path, err: Exception) -> str:
    write_status(point, sweep_dir / point.name, "failed", str(err))
    log_sweep(f"point {point.index} failed: {err}")
    return "failed"


def point_done(point, sweep_dir: Path, on_done=None) -> str:
    write_status(point, sweep_dir / point.name, "done")
    if on_done is not None:
        on_done(point, sweep_dir / point.name)
    return "done"


def run_point(point, sweep_dir: Path, train: Train, on_done=None) -> str:
    """Trains one point with ``train`` (skipping it when finished); returns its status afterwards.
    ``on_done(point, run_dir)`` runs after a point finished training here."""
    skipped, before = start_point(point, sweep_dir)
    if skipped:
        return skipped
    try:
        train(point.config, sweep_dir / point.name)
    except ConfigChanged as err:
        return point_other_config(point, sweep_dir, before, err)
    except RunInUse as err:
        return point_in_use(point, err)
    except (RunFailed, UserError) as err:  # one point's failure never stops the others
        return point_failed(point, sweep_dir, err)
    except Stopped as err:
        write_status(point, sweep_dir / point.name, "stopped", str(err))
        raise
    return point_done(point, sweep_dir, on_done)
