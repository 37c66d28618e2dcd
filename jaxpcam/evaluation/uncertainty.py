"""Which tiles should a person look at: the risk-coverage curve of the per-tile uncertainty.

Tiles are kept from the most certain down (ties in file order); at each coverage (the share of
tiles the model decides, the rest referred to a pathologist) the decisions on the kept tiles are
scored at the decision threshold. AURC (Geifman et al. 2019) is the mean over every coverage
k/N of the error rate on the k most certain tiles: lower is better; an uncertainty that put
every mistake last would reach r + (1 - r) ln(1 - r) for the error rate r (``aurc_ideal``).
"""

import numpy as np
from sklearn import metrics as skm

from jaxpcam.core.metrics import show
from jaxpcam.core.task import Task

COVERAGES = tuple(round(1.0 - 0.05 * i, 2) for i in range(19))  # 100%, 95%, ..., 10%
REFER = 0.10  # the README's question: what referring the most uncertain 10% buys
_NAN = float("nan")


def _decisions(task: Task, probs: np.ndarray, threshold: float | None) -> np.ndarray:
    return (probs >= threshold).astype(np.int64) if task.binary else probs.argmax(axis=1)


def _kept_row(task: Task, labels: np.ndarray, predicted: np.ndarray, coverage: float, limit: float) -> dict:
    row = {"coverage": coverage, "count": len(labels), "max_uncertainty": limit}
    row["accuracy"] = float(np.mean(predicted == labels)) if len(labels) else _NAN
    if task.binary:
        positives = labels == 1
        row["sensitivity"] = float(predicted[positives].mean()) if positives.any() else _NAN
        row["specificity"] = float(1 - predicted[~positives].mean()) if (~positives).any() else _NAN
        row["f2"] = float(skm.fbeta_score(labels, predicted, beta=2.0, zero_division=np.nan)) if len(labels) else _NAN
    return row


def risk_coverage(task: Task, labels: np.ndarray, probs: np.ndarray, threshold: float | None,
                  values: np.ndarray, measure: str) -> dict:  # fmt: skip
    """metrics.json's ``uncertainty``: the measure, AURC, the curve at COVERAGES, and the split
    with and without the REFER most uncertain tiles."""
    order = np.argsort(values, kind="stable")  # most certain first
    predicted = _decisions(task, probs, threshold)[order]
    ordered_labels, ordered_values = np.asarray(labels)[order], np.asarray(values)[order]
    errors = np.cumsum(predicted != ordered_labels)
    aurc = float(np.mean(errors / np.arange(1, len(errors) + 1))) if len(errors) else _NAN
    curve = []
    for coverage in COVERAGES:
        k = max(1, round(coverage * len(order)))
        curve.append(_kept_row(task, ordered_labels[:k], predicted[:k], coverage, float(ordered_values[k - 1])))
    kept = curve[COVERAGES.index(round(1 - REFER, 2))]
    rate = float(errors[-1] / len(errors)) if len(errors) else _NAN
    return {
        "measure": measure,
        "aurc": aurc,
        "aurc_ideal": rate + (1 - rate) * float(np.log1p(-rate)) if rate < 1 else rate,
        "error_rate": rate,
        "curve": curve,
        "refer_most_uncertain": {"share": REFER, "all": curve[0], "kept": kept},
    }


def write_risk_coverage_csv(path, section: dict) -> None:
    keys = list(section["curve"][0])
    lines = [",".join(keys)] + [",".join(show(row[k], 6) for k in keys) for row in section["curve"]]
    path.write_text("\n".join(lines) + "\n")
