"""A split's predictions and the patch-level numbers made from them: metrics next to a majority
baseline at the decision threshold and at 0.5, and the slices."""

import dataclasses

import numpy as np

from jaxpcam.core import metrics as metrics_lib
from jaxpcam.core.task import Task
from jaxpcam.evaluation import scores as scores_lib
from jaxpcam.evaluation.slices import IntensitySlicing, slice_table
from jaxpcam.evaluation.slides import SlideMeta


@dataclasses.dataclass(frozen=True)
class Predictions:
    task: Task
    labels: np.ndarray
    probs: np.ndarray  # (N,) P(positive) for a binary task, else (N, C), at ``temperature``
    brightness: np.ndarray  # per-image mean intensity, the dark/bright slicing feature
    user_slices: dict[str, np.ndarray]
    view_scores: np.ndarray | None = None  # (N, V) or (N, V, C): logit space, per test-time view (scores.py)
    temperature: float = 1.0
    uncertainty: np.ndarray | None = None  # (N,) per tile, by ``uncertainty_measure`` (scores.uncertainty)
    uncertainty_measure: str = ""
    slide_meta: SlideMeta | None = None  # the split's _meta.csv, when it fits (slides.read_meta)

    @property
    def scores(self) -> np.ndarray:
        """One logit-space score per tile (the TTA mean's logit with several views)."""
        return scores_lib.combined_scores(self.task, self.view_scores)

    def at_temperature(self, temperature: float) -> "Predictions":
        """The same predictions with probabilities from logit / ``temperature``, and the
        uncertainty of those."""
        probs = scores_lib.probabilities(self.task, self.scores, temperature)
        measure, values = scores_lib.uncertainty(self.task, self.view_scores, probs)
        return dataclasses.replace(
            self, probs=probs, temperature=temperature, uncertainty=values, uncertainty_measure=measure
        )


def patch_report(preds: Predictions, reference_labels: np.ndarray, threshold: dict | None) -> dict:
    """The model at the threshold (and at 0.5) next to the majority baseline of ``reference_labels``."""
    task = preds.task
    outputs = 1 if task.binary else task.num_logits
    baseline_probs = metrics_lib.majority_baseline(reference_labels, preds.labels, outputs)
    if task.binary:
        value = threshold["value"]
        return {
            "model": metrics_lib.binary_report(preds.labels, preds.probs, value),
            "model_at_0.5": metrics_lib.binary_report(preds.labels, preds.probs, 0.5),
            "majority_baseline": metrics_lib.binary_report(preds.labels, baseline_probs, 0.5),
        }
    return {
        "model": metrics_lib.multiclass_report(preds.labels, preds.probs, task.class_names),
        "majority_baseline": metrics_lib.multiclass_report(preds.labels, baseline_probs, task.class_names),
    }


def split_slices(preds: Predictions, slicing: IntensitySlicing, threshold: float | None) -> tuple[list[dict], dict]:
    """The slice table (slices.slice_table; accuracy alone for a multi-class task) and the cuts."""
    masks = {**slicing.masks(preds.brightness), **preds.user_slices}
    if preds.task.binary:
        return slice_table(preds.labels, preds.probs, threshold, masks), slicing.cuts(preds.brightness)
    correct = (preds.probs.argmax(axis=1) == preds.labels).astype(np.float64)
    rows = [{"slice": "all", "count": len(correct), "accuracy": float(correct.mean())}]
    for name, mask in masks.items():
        accuracy = float(correct[mask].mean()) if mask.any() else float("nan")
        rows.append({"slice": name, "count": int(mask.sum()), "accuracy": accuracy,
                     "accuracy_gap": accuracy - rows[0]["accuracy"]})  # fmt: skip
    return rows, slicing.cuts(preds.brightness)
