"""Can a probability be trusted: expected calibration error, Brier score and log-loss, and the
temperature T that makes the probabilities honest on the validation split.

ECE follows Guo et al. 2017 ("On calibration of modern neural networks"): the confidence is the
probability of the predicted class (argmax: P(positive) >= 0.5 for a binary task), binned into 15
equal-width bins over (0, 1]; ECE is the count-weighted mean of |accuracy - mean confidence| per
bin. The equal-mass variant puts the same number of tiles in each bin (sorted by confidence).

Temperature scaling (Guo et al., section 4.2) divides the logits by one scalar T > 0, fitted on
the validation split by minimising the negative log-likelihood (SciPy's bounded scalar minimiser
over log T). T > 1 softens over-confident probabilities, T < 1 sharpens timid ones (a model
trained on balanced batches is miscalibrated for any other prevalence by construction). T is
stored inside the threshold record it was fitted with (``"temperature"``; the threshold is chosen
on the probabilities it gives), so a threshold and its temperature never come apart; a threshold
record from before temperatures counts as T = 1 (uncalibrated).
"""

import math

import numpy as np
from scipy import optimize, special
from sklearn import metrics as skm

from jaxpcam.core.reporting import log
from jaxpcam.core.task import Task
from jaxpcam.evaluation.scores import probabilities

BINS = 15
LOG_T_BOUNDS = (math.log(1e-2), math.log(1e2))
_NAN = float("nan")


def confidence_and_correct(task: Task, labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The predicted class's probability and whether that class is the label (Guo et al.)."""
    if task.binary:
        predicted = (probs >= 0.5).astype(np.int64)
        return np.where(predicted == 1, probs, 1 - probs), predicted == labels
    predicted = probs.argmax(axis=1)
    return probs.max(axis=1), predicted == labels


def reliability_bins(confidence: np.ndarray, correct: np.ndarray, bins: int = BINS, equal_mass: bool = False):
    """Per non-empty bin: (count, mean confidence, accuracy)."""
    if equal_mass:
        order = np.argsort(confidence, kind="stable")
        groups = [g for g in np.array_split(order, min(bins, len(order))) if len(g)]
    else:
        edges = np.linspace(0.0, 1.0, bins + 1)
        index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)  # (lo, hi]; 0 in bin 0
        groups = [np.flatnonzero(index == b) for b in range(bins)]
        groups = [g for g in groups if len(g)]
    return [(len(g), float(confidence[g].mean()), float(correct[g].mean())) for g in groups]


def ece(confidence: np.ndarray, correct: np.ndarray, bins: int = BINS, equal_mass: bool = False) -> float:
    """Expected calibration error: sum over bins of count/N * |accuracy - mean confidence|."""
    if len(confidence) == 0:
        return _NAN
    rows = reliability_bins(confidence, correct, bins, equal_mass)
    return float(sum(n * abs(acc - conf) for n, conf, acc in rows) / len(confidence))


def nll(task: Task, labels: np.ndarray, scores: np.ndarray, temperature: float) -> float:
    """Mean negative log-likelihood of ``labels`` under the scores at ``temperature``."""
    scaled = np.asarray(scores, np.float64) / temperature
    if task.binary:
        return float(np.mean(np.logaddexp(0.0, np.where(labels == 1, -scaled, scaled))))
    log_p = special.log_softmax(scaled, axis=1)
    return float(-np.mean(log_p[np.arange(len(labels)), labels]))


def fit_temperature(task: Task, labels: np.ndarray, scores: np.ndarray) -> dict:
    """T minimising the NLL on (validation) ``labels``/``scores``, with the NLL before and after."""
    labels = np.asarray(labels, np.int64)
    found = optimize.minimize_scalar(
        lambda log_t: nll(task, labels, scores, math.exp(log_t)),
        bounds=LOG_T_BOUNDS,
        method="bounded",
        options={"xatol": 1e-9},
    )
    temperature = math.exp(float(found.x))
    return {
        "value": temperature,
        "fitted_on": "valid",
        "method": "temperature scaling: probabilities from logit / T, T minimising the NLL on valid",
        "count": len(labels),
        "nll_before": nll(task, labels, scores, 1.0),
        "nll_after": nll(task, labels, scores, temperature),
    }


def calibration_numbers(task: Task, labels: np.ndarray, probs: np.ndarray) -> dict:
    """ECE (equal-width and equal-mass), Brier score and log-loss of one set of probabilities."""
    confidence, correct = confidence_and_correct(task, labels, probs)
    if task.binary:
        brier = float(skm.brier_score_loss(labels, probs, pos_label=1))
        log_loss = float(skm.log_loss(labels, probs, labels=[0, 1]))
    else:
        onehot = np.eye(probs.shape[1])[labels]
        brier = float(np.mean(np.sum((probs - onehot) ** 2, axis=1)))
        log_loss = float(skm.log_loss(labels, probs, labels=list(range(probs.shape[1]))))
    return {
        "ece": ece(confidence, correct),
        "ece_equal_mass": ece(confidence, correct, equal_mass=True),
        "brier": brier,
        "log_loss": log_loss,
    }


def calibration_section(task: Task, labels: np.ndarray, scores: np.ndarray, temperature: dict | None) -> dict:
    """metrics.json's ``calibration``: the numbers at the stored temperature and without it (T = 1).
    Temperatures are fitted for binary tasks, with the decision threshold."""
    value = temperature["value"] if temperature else 1.0
    section = {
        "temperature": value,
        "bins": BINS,
        **calibration_numbers(task, labels, probabilities(task, scores, value)),
        "uncalibrated": calibration_numbers(task, labels, probabilities(task, scores, 1.0)),
    }
    if temperature is None and task.binary:
        section["note"] = "no temperature stored with the threshold (T = 1): evaluate the valid split to fit one"
    return section


def stored_temperature(threshold: dict | None, where: str = "") -> dict | None:
    """The temperature record a threshold record carries; None (T = 1) for one from before
    temperatures, said in one line when ``where`` names its file."""
    temperature = (threshold or {}).get("temperature")
    if threshold is not None and temperature is None and where:
        log(f"no temperature stored with the decision threshold in {where} (chosen before jaxpcam fitted one): "
            "probabilities uncalibrated (T = 1); evaluate the valid split again to fit one")  # fmt: skip
    return temperature
