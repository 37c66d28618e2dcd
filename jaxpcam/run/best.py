"""The one rule for "best": the epoch with the highest (``mode='max'``) or lowest (``'min'``)
finite value of the metric, ties going to the earliest epoch. The training summary, checkpoint
retention, ``evaluate --checkpoint best``, ``report`` and the sweep champion all use it, so they
always name the same epoch and checkpoint.
"""

import math

# metric names (after any val_/test_/best_ prefix, before any _tta suffix)
LOWER_IS_BETTER = ("loss", "log_loss", "brier", "ece", "ece_equal_mass", "ece_uncalibrated", "aurc")


def _finite(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def rank(value, when: int, mode: str) -> tuple:
    """Orders candidates: a larger rank is better; ``when`` (epoch or step) breaks ties toward
    the earliest. A missing or non-finite value ranks below every finite one."""
    if not _finite(value):
        return (0, 0.0, 0)
    return (1, float(value) if mode == "max" else -float(value), -when)


def best_record(records: list[dict], metric: str, mode: str) -> dict | None:
    """The best of metrics.jsonl-like records (each with ``epoch``), or None if none is scored."""
    scored = [r for r in records if _finite(r.get(metric))]
    return max(scored, key=lambda r: rank(r[metric], r["epoch"], mode)) if scored else None


def improves(value, best_value, mode: str) -> bool:
    """Whether a later epoch's ``value`` beats the best so far (a tie does not)."""
    if not _finite(value):
        return False
    return best_value is None or (value > best_value if mode == "max" else value < best_value)


def mode_of(metric: str) -> str:
    """The direction of one of our metric names, e.g. 'best_val_loss' -> 'min'."""
    metric = metric.removesuffix("_tta")
    return "min" if any(metric == n or metric.endswith(f"_{n}") for n in LOWER_IS_BETTER) else "max"


def column_mode(column: str, best_metric: str, best_mode: str) -> str:
    """The direction of a report or sweep column: the run's own ``best_mode`` for its best
    metric (best_<metric>, final_<metric> or the metric itself), else the metric's nature."""
    if column in (best_metric, f"best_{best_metric}", f"final_{best_metric}"):
        return best_mode
    return mode_of(column)
