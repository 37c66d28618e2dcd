import math

import numpy as np

from jaxpcam.core.metrics import binary_metrics, multiclass_metrics


def test_binary_metrics_on_a_constructed_case():
    labels = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    probs = np.array([0.9, 0.8, 0.4, 0.3, 0.6, 0.2, 0.1, 0.05])
    m = binary_metrics(labels, probs)
    # at 0.5: TP=2, FN=2, FP=1, TN=3 -> precision 2/3, recall 1/2
    assert m["accuracy"] == 5 / 8
    precision, recall = 2 / 3, 1 / 2
    assert math.isclose(m["f2"], 5 * precision * recall / (4 * precision + recall))
    # 16 positive/negative pairs; 0.9 and 0.8 beat all 4 negatives, 0.4 and 0.3 beat 3 (not 0.6)
    assert math.isclose(m["roc_auc"], 14 / 16)


def test_roc_auc_is_undefined_not_zero_with_one_class():
    m = binary_metrics(np.ones(4, int), np.array([0.2, 0.7, 0.9, 0.1]))
    assert math.isnan(m["roc_auc"]) and m["accuracy"] == 0.5


def test_multiclass_metrics():
    labels = np.array([0, 0, 1, 2])
    probs = np.eye(3)[[0, 1, 1, 2]]
    m = multiclass_metrics(labels, probs)
    assert m["accuracy"] == 0.75
    assert math.isclose(m["balanced_accuracy"], (0.5 + 1 + 1) / 3)


def test_roc_auc_is_undefined_for_non_finite_scores_of_a_diverged_model():
    m = binary_metrics(np.array([0, 1, 0, 1]), np.array([0.1, np.nan, 0.3, 0.9]))
    assert math.isnan(m["roc_auc"])
