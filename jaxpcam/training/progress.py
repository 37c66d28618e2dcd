"""Training progress as a user reads it: on a terminal a live bar per epoch (tqdm's look), in a log
file (a SLURM .out) one plain labelled line per sync. Both show the same numbers:

- img/s over the recent window (the steps since the previous report), so a slowdown shows at once;
  the epoch-end line and ``metrics.jsonl``'s ``images_per_second`` give the epoch's mean instead,
  and say so;
- the epoch's ETA and the run's ETA (the epoch's mean pace so far, plus the last validation's
  duration for every validation still to come).
"""

import dataclasses
import shutil

from jaxpcam.core.reporting import format_duration

BAR_WIDTH = 20


@dataclasses.dataclass
class Pace:
    """Where the recent window began, and how long the last validation pass took."""

    window_start: float
    window_step: int
    validation_seconds: float = 0.0


@dataclasses.dataclass(frozen=True)
class Position:
    step: int  # global, after the last finished step
    steps_per_epoch: int
    epochs: int

    @property
    def epoch(self) -> int:
        return (self.step - 1) // self.steps_per_epoch + 1

    @property
    def in_epoch(self) -> int:
        return self.step - (self.epoch - 1) * self.steps_per_epoch


def progress_text(
    at: Position, loss: float, window: tuple, epoch: tuple, batch_size: int, pace: Pace, live: bool
) -> str:
    """``window`` and ``epoch`` are (steps, seconds) of the recent window and of the epoch so far."""
    window_rate = window[0] / window[1] if window[1] > 0 else 0.0
    epoch_rate = epoch[0] / epoch[1] if epoch[1] > 0 else 0.0
    left_in_epoch = at.steps_per_epoch - at.in_epoch
    left_in_run = at.epochs * at.steps_per_epoch - at.step
    validations_left = at.epochs - at.epoch + 1
    epoch_eta = left_in_epoch / epoch_rate if epoch_rate else float("inf")
    run_eta = left_in_run / epoch_rate + validations_left * pace.validation_seconds if epoch_rate else float("inf")
    speed = f"{window_rate * batch_size:,.0f} img/s (last {window[0]} steps)"
    etas = f"ETA epoch {format_duration(epoch_eta)}, run {format_duration(run_eta)}"
    if live:  # the bar takes what the terminal's width leaves
        rest = f"{at.in_epoch}/{at.steps_per_epoch} loss {loss:.4f} | {speed} | {etas}"
        width = min(BAR_WIDTH, shutil.get_terminal_size((100, 24)).columns - 1 - len(rest) - 14)
        done = round(max(width, 0) * at.in_epoch / at.steps_per_epoch)
        bar = f"[{'#' * done}{'.' * (width - done)}] " if width >= 5 else ""
        return f"epoch {at.epoch}/{at.epochs} {bar}{rest}"
    return (
        f"epoch {at.epoch}/{at.epochs} step {at.in_epoch}/{at.steps_per_epoch} (global {at.step}) "
        f"loss {loss:.4f} | {speed} | {etas}"
    )
