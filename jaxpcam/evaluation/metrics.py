"""Validation metrics on host arrays, computed with scikit-learn's reference implementations.

A metric that is undefined for the data (ROC-AUC with one class present) is NaN, never 0.
"""

import numpy as np
from sklearn import metrics as skm


def binary_metrics(labels: np.ndarray, probs: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """accuracy, ROC-AUC and F2 of P(positive) ``probs`` against 0/1 ``labels``."""
    preds = (probs >= threshold).astype(np.int32)
    # Undefined (NaN) with one class present, or when a diverged model produced non-finite scores.
    both_classes = len(np.unique(labels)) == 2 and bool(np.isfinite(probs).all())
    return {
        "accuracy": float(skm.accuracy_score(labels, preds)),
        "roc_auc": float(skm.roc_auc_score(labels, probs)) if both_classes else float("nan"),
        "f2": float(skm.fbeta_score(labels, preds, beta=2.0, zero_division=0.0)),
    }


def multiclass_metrics(labels: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """accuracy, macro precision/recall/F1 and balanced accuracy of argmax(``probs``)."""
    preds = probs.argmax(axis=1)
    precision, recall, f1, _ = skm.precision_recall_fscore_support(labels, preds, average="macro", zero_division=0.0)
    return {
        "accuracy": float(skm.accuracy_score(labels, preds)),
        "macro_precision": float(precision),
        "macro_recall": float(recall),
        "macro_f1": float(f1),
        "balanced_accuracy": float(skm.balanced_accuracy_score(labels, preds)),
    }


def classification_metrics(labels: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    return binary_metrics(labels, probs) if probs.ndim == 1 else multiclass_metrics(labels, probs)
