"""``training.early_stopping_patience``: stop once ``checkpoint.best_metric`` has not improved for
that many epochs (0 = off), by best.py's one rule (a tie or a non-finite value never improves).

The decision is a function of the run's progress alone (its best epoch, which every checkpoint
carries) and the number of epochs done, so a resumed run stops exactly where an uninterrupted
one does, and a rerun of a run that stopped early has nothing to train unless the patience is
raised (or set to 0): raising ``training.epochs`` alone would meet the same rule at once.
"""

import ml_collections

from jaxpcam.core.reporting import count
from jaxpcam.training.checkpoint import Progress


def stop_reason(progress: Progress, epochs_done: int, config: ml_collections.ConfigDict) -> str | None:
    """Why training stops after ``epochs_done`` epochs, or None when it goes on."""
    patience = config.training.early_stopping_patience
    if patience <= 0 or epochs_done <= 0:
        return None
    stale = epochs_done - (progress.best_epoch or 0)
    if stale < patience:
        return None
    c = config.checkpoint
    if progress.best_epoch is None:
        best = f"no epoch had a finite {c.best_metric}"
    else:
        best = f"best epoch {progress.best_epoch}, {c.best_metric} {progress.best_value:.4f}"
    return (
        f"{c.best_metric} ({c.best_mode}) has not improved for {count(stale, 'epoch')} "
        f"(training.early_stopping_patience={patience}; {best})"
    )


def mark(record: dict, progress: Progress, epoch: int, config: ml_collections.ConfigDict) -> str | None:
    """At the end of ``epoch`` (``progress`` counting it): why the run stops here, having marked
    its metrics record ``stopped_early``; None when it goes on or ends anyway (the last epoch)."""
    reason = stop_reason(progress, epoch, config) if epoch < config.training.epochs else None
    if reason:
        record["stopped_early"] = True
    return reason


def stopped(step: int, steps_per_epoch: int, progress: Progress, config: ml_collections.ConfigDict) -> str | None:
    """Why a run that is at ``step`` has nothing more to train because it stopped early, or None.
    Only an epoch end can stop a run; a mid-epoch checkpoint finishes its epoch first."""
    if step % steps_per_epoch:
        return None
    return stop_reason(progress, step // steps_per_epoch, config)


def nothing_to_do(step: int, steps_per_epoch: int, progress: Progress, config: ml_collections.ConfigDict) -> str:
    """The line a rerun with nothing to train logs."""
    done, why = step // steps_per_epoch, stopped(step, steps_per_epoch, progress, config)
    if why:
        return f"nothing to do: the run stopped early after epoch {done}: {why}; raise the patience to train on"
    return f"nothing to do: the run has trained {count(done, 'epoch')} (training.epochs={config.training.epochs})"
