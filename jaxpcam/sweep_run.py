"""Running one sweep point: whether it needs training now, and its sweep_point.json record
around the attempt. (The command and its flags are jaxpcam/sweep.py.)"""

from pathlib import Path

from jaxpcam.errors import RunFailed, Stopped, UserError
from jaxpcam.reporting import count


def log_sweep(message: str) -> None:
    from jaxpcam.reporting import log

    log(f"sweep: {message}")


def skip_reason(status: str, finished: int, wanted: int) -> str | None:
    """Why a point needs no training now, or None. A point done at fewer epochs than this
    command's config asks for (an earlier --config.training.epochs=1) is trained on."""
    if status == "running":
        return "is running (a live process holds its run.lock): skipped"
    if status == "done" and finished >= wanted:
        return f"is done: skipped ({count(finished, 'epoch')})"
    return None


def run_point(point, sweep_dir: Path) -> str:
    """Trains one point (skipping it when finished); returns its status afterwards."""
    from jaxpcam.evaluation.sweep_report import point_epochs, point_status, write_hparams, write_status
    from jaxpcam.training.loop import train_and_evaluate

    run_dir = sweep_dir / point.name
    status = point_status(point, run_dir)
    finished, wanted = point_epochs(point, run_dir)[0], point.config.training.epochs
    reason = skip_reason(status, finished, wanted)
    if reason:
        log_sweep(f"point {point.index} ({point.name}) {reason}")
        return status
    doing = "starting" if status == "not started" else f"resuming (epoch {finished} of {wanted})"
    if status == "done":  # a run that stopped early trains on only if its patience was raised
        doing = f"done at {count(finished, 'epoch')}; training on to training.epochs={wanted} (unless it stopped early)"
    log_sweep(f"point {point.index} ({point.name}): {doing} in {run_dir}")
    write_status(point, run_dir, "running")
    try:
        train_and_evaluate(point.config, run_dir)
    except (RunFailed, UserError) as err:  # one point's failure never stops the others
        write_status(point, run_dir, "failed", str(err))
        log_sweep(f"point {point.index} failed: {err}")
        return "failed"
    except Stopped as err:
        write_status(point, run_dir, "stopped", str(err))
        raise
    write_status(point, run_dir, "done")
    write_hparams(point, run_dir)
    return "done"
