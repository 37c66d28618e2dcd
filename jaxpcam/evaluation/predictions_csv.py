"""The one predictions CSV that evaluate and predict write, its columns set by the task:
binary ``probability`` (P(positive)) and ``predicted`` at the decision threshold; multi-class
``prob_<class name>`` per class and the predicted class name; then, when given, each tile's
``uncertainty`` (scores.uncertainty). Probabilities are written exactly (shortest round-trip
repr), so re-reading them reproduces every decision."""

from pathlib import Path

import numpy as np

from jaxpcam.core.files import write_text_atomic
from jaxpcam.core.task import Task


def predictions_csv(
    task: Task, ids: list[str], probs: np.ndarray, threshold: float | None, labels=None, id_column="name",
    uncertainty=None,
) -> str:  # fmt: skip
    """The CSV's text. ``ids`` name the rows in column ``id_column``; ``labels`` (class indices)
    add a label column, ``uncertainty`` (one value per row) an uncertainty column."""
    names = task.class_names
    label_column = ["label"] if labels is not None else []
    if task.binary:
        header = [id_column, *label_column, "probability", "predicted"]
        cells = ([repr(p), str(int(p >= threshold))] for p in probs.tolist())
    else:
        header = [id_column, *label_column, *(f"prob_{c}" for c in names), "predicted"]
        cells = ([*map(repr, p), names[int(np.argmax(p))]] for p in probs.tolist())
    if uncertainty is not None:
        header.append("uncertainty")
        cells = ([*c, repr(u)] for c, u in zip(cells, np.asarray(uncertainty, np.float64).tolist(), strict=True))
    shown = [str(int(y)) if task.binary else names[int(y)] for y in labels] if labels is not None else None
    rows = (",".join([i, *([shown[n]] if shown else []), *c]) for n, (i, c) in enumerate(zip(ids, cells, strict=True)))
    return ",".join(header) + "\n" + "\n".join(rows) + "\n"


def write_predictions_csv(
    path: Path, task: Task, ids: list[str], probs: np.ndarray, threshold: float | None, labels=None, id_column="name",
    uncertainty=None,
) -> None:  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, predictions_csv(task, ids, probs, threshold, labels, id_column, uncertainty))
