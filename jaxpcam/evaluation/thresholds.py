"""Choosing the decision threshold on the validation split, to be applied unchanged elsewhere.

A patch is called positive when ``probability >= threshold``. Candidates are the distinct scores
on the validation split (scikit-learn's ``precision_recall_curve``), so the chosen value
reproduces the validation operating point exactly.
"""

import dataclasses

import numpy as np
from sklearn import metrics as skm

from jaxpcam.core.errors import UserError

RULES = ("f2", "recall")


@dataclasses.dataclass(frozen=True)
class Threshold:
    value: float
    rule: str  # 'f2': maximise F2; 'recall': the highest threshold whose recall reaches the target
    target_recall: float | None
    precision: float  # at ``value`` on the split it was chosen on
    recall: float
    f2: float

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _curve(labels: np.ndarray, probs: np.ndarray):
    if len(np.unique(labels)) < 2:
        raise UserError("cannot choose a threshold: the validation split holds only one class")
    precision, recall, thresholds = skm.precision_recall_curve(labels, probs)
    # The last (precision=1, recall=0) point has no threshold.
    return precision[:-1], recall[:-1], thresholds


def _f2(precision: np.ndarray, recall: np.ndarray) -> np.ndarray:
    denominator = 4 * precision + recall
    return np.divide(5 * precision * recall, denominator, out=np.zeros_like(denominator), where=denominator > 0)


def choose_threshold(labels: np.ndarray, probs: np.ndarray, rule: str = "f2", target_recall: float = 0.9) -> Threshold:
    """The threshold by ``rule`` on (validation) ``labels``/``probs``.

    'f2' maximises F2 (ties go to the higher threshold: fewer positive calls at equal F2).
    'recall' is the operating point where lowering the threshold first reaches
    ``target_recall``: the highest threshold with recall >= target, so the best precision
    that still meets the recall a screening use needs.
    """
    precision, recall, thresholds = _curve(labels, probs)
    f2 = _f2(precision, recall)
    if rule == "f2":
        i = len(f2) - 1 - int(np.argmax(f2[::-1]))
        target = None
    elif rule == "recall":
        if not 0.0 < target_recall <= 1.0:
            raise UserError(f"target recall must be in (0, 1], got {target_recall}")
        reaching = np.flatnonzero(recall >= target_recall)  # thresholds ascend, recall descends
        i, target = int(reaching.max()), float(target_recall)
    else:
        raise UserError(f"unknown threshold rule {rule!r}: use one of {', '.join(RULES)}")
    return Threshold(float(thresholds[i]), rule, target, float(precision[i]), float(recall[i]), float(f2[i]))
