"""Classification metrics on host arrays, computed with scikit-learn's reference implementations.

A metric that is undefined for the data (ROC-AUC with one class present, precision with no
positive prediction) is NaN, never 0; JSON files hold it as null and reports print "undefined".
"""

import math

import numpy as np

_NAN = float("nan")


def _sklearn_metrics():
    """scikit-learn's metrics, imported when first needed: the import takes ~0.8 s (scipy.stats),
    which every command that imports the task would otherwise pay before its first line."""
    from sklearn import metrics

    return metrics


def _both_classes(labels: np.ndarray, probs: np.ndarray) -> bool:
    return len(np.unique(labels)) == 2 and bool(np.isfinite(probs).all())


def binary_metrics(labels: np.ndarray, probs: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """accuracy, ROC-AUC and F2 of P(positive) ``probs`` against 0/1 ``labels``: the per-epoch set."""
    skm = _sklearn_metrics()
    preds = (probs >= threshold).astype(np.int32)
    return {
        "accuracy": float(skm.accuracy_score(labels, preds)),
        "roc_auc": float(skm.roc_auc_score(labels, probs)) if _both_classes(labels, probs) else _NAN,
        "f2": float(skm.fbeta_score(labels, preds, beta=2.0, zero_division=0.0)),
    }


def multiclass_metrics(labels: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """accuracy, macro precision/recall/F1 and balanced accuracy of argmax(``probs``)."""
    skm = _sklearn_metrics()
    preds = probs.argmax(axis=1)
    precision, recall, f1, _ = skm.precision_recall_fscore_support(labels, preds, average="macro", zero_division=0.0)
    return {
        "accuracy": float(skm.accuracy_score(labels, preds)),
        "macro_precision": float(precision),
        "macro_recall": float(recall),
        "macro_f1": float(f1),
        "balanced_accuracy": float(skm.balanced_accuracy_score(labels, preds)),
    }


BINARY_METRICS = ("accuracy", "roc_auc", "f2")  # the keys of binary_metrics
MULTICLASS_METRICS = ("accuracy", "macro_precision", "macro_recall", "macro_f1", "balanced_accuracy")


def binary_report(labels: np.ndarray, probs: np.ndarray, threshold: float) -> dict:
    """Every number the evaluation reports for P(positive) ``probs`` at one decision threshold."""
    skm = _sklearn_metrics()
    preds = (probs >= threshold).astype(np.int32)
    both = _both_classes(labels, probs)
    finite = bool(np.isfinite(probs).all())
    return {
        "threshold": float(threshold),
        "count": len(labels),
        "positives": int(np.sum(labels == 1)),
        "accuracy": float(skm.accuracy_score(labels, preds)),
        "precision": float(skm.precision_score(labels, preds, zero_division=np.nan)),
        "recall": float(skm.recall_score(labels, preds, zero_division=np.nan)),
        "f1": float(skm.f1_score(labels, preds, zero_division=np.nan)),
        "f2": float(skm.fbeta_score(labels, preds, beta=2.0, zero_division=np.nan)),
        "balanced_accuracy": float(skm.balanced_accuracy_score(labels, preds)) if both else _NAN,
        "roc_auc": float(skm.roc_auc_score(labels, probs)) if both else _NAN,
        "pr_auc": float(skm.average_precision_score(labels, probs)) if both else _NAN,
        "log_loss": float(skm.log_loss(labels, probs, labels=[0, 1])) if finite else _NAN,
        "brier": float(skm.brier_score_loss(labels, probs, pos_label=1)) if finite else _NAN,
        "confusion_matrix": skm.confusion_matrix(labels, preds, labels=[0, 1]).tolist(),  # rows: true 0, 1
    }


def multiclass_report(labels: np.ndarray, probs: np.ndarray, class_names=None) -> dict:
    """Accuracy, macro and per-class precision/recall/F1 (keyed by class name), balanced
    accuracy, log-loss, confusion."""
    skm = _sklearn_metrics()
    classes = list(range(probs.shape[1]))
    class_names = [str(c) for c in (class_names or classes)]
    preds = probs.argmax(axis=1)
    per_class = skm.precision_recall_fscore_support(labels, preds, labels=classes, zero_division=np.nan)
    macro = skm.precision_recall_fscore_support(labels, preds, labels=classes, average="macro", zero_division=np.nan)
    return {
        "count": len(labels),
        "accuracy": float(skm.accuracy_score(labels, preds)),
        "macro_precision": float(macro[0]),
        "macro_recall": float(macro[1]),
        "macro_f1": float(macro[2]),
        "balanced_accuracy": float(skm.balanced_accuracy_score(labels, preds)),
        "log_loss": _multiclass_log_loss(labels, probs, classes),
        "per_class": {
            name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for name, p, r, f, s in zip(class_names, *per_class, strict=True)
        },
        "confusion_matrix": skm.confusion_matrix(labels, preds, labels=classes).tolist(),
    }


def _multiclass_log_loss(labels, probs, classes) -> float:
    skm = _sklearn_metrics()
    if not np.isfinite(probs).all():
        return _NAN
    # float32 softmax rows sum to 1 only within ~1e-7; scikit-learn warns on that.
    return float(skm.log_loss(labels, probs / probs.sum(axis=1, keepdims=True), labels=classes))


def row_shares(matrix) -> np.ndarray:
    """Each confusion-matrix cell as a fraction of its row (the true class): recall on the
    diagonal; NaN across a class absent from the data (not 0, which would read as 'never right')."""
    matrix = np.asarray(matrix, np.float64)
    totals = matrix.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, matrix / totals, np.nan)


def confusion_cells(matrix) -> list[list[tuple[str, str]]]:
    """Per cell its count and its share of the true class as text, e.g. ('1,204', '83.5%'):
    one wording for confusion.png and the printed summary ('-' for a class absent from the data)."""
    shares = row_shares(matrix)
    return [
        [(f"{int(c):,}", f"{s:.1%}" if np.isfinite(s) else "-") for c, s in zip(counts, row, strict=True)]
        for counts, row in zip(np.asarray(matrix), shares, strict=True)
    ]


def majority_baseline(reference_labels: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Probabilities of a model that always outputs the class frequencies of ``reference_labels``
    (scikit-learn's ``DummyClassifier(strategy='prior')``): it predicts the majority class."""
    prior = np.bincount(reference_labels, minlength=max(num_classes, 2)) / len(reference_labels)
    if num_classes == 1:
        return np.full(len(labels), prior[1], np.float64)
    return np.tile(prior[:num_classes], (len(labels), 1))


def show(value, digits: int = 4) -> str:
    """A metric for people: 'undefined' for NaN/None rather than a misleading 0.0."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "undefined"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)
