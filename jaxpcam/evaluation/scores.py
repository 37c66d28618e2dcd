"""The model's outputs in logit space, per test-time view, and what evaluate and predict make of
them on the host: the (TTA) probability at a temperature, and each tile's uncertainty.

The device returns per-view scores: for a binary task the logit of P(positive) (one logit, or
the difference of two), for a multi-class task the log-probabilities. Everything after that is
float64 on the host, so a probability and the threshold it is compared with go through the
same arithmetic. With TTA the probability is the mean of the views' probabilities (as before
temperatures existed); temperature scaling divides that mean's logit by T, a strictly
increasing map of the probability, so the ranking (ROC-AUC) and every decision at a threshold
carried through the same map stay as they were.
"""

import jax
import jax.numpy as jnp
import numpy as np
from scipy import special

from jaxpcam.core.task import Task
from jaxpcam.data import transforms
from jaxpcam.data.normalization import normalize
from jaxpcam.evaluation.loading import LoadedRun

ENTROPY = "entropy"  # predictive entropy in bits of the tile's (calibrated) probabilities
TTA_SPREAD = "tta_spread"  # standard deviation of P over the test-time views


def view_scores_fn(run: LoadedRun, tta: bool = False):
    """jitted uint8 images (B, H, W, C) -> per-view scores, (B, V) for a binary task or (B, V, C),
    with V = 1 without TTA, else one per test-time view (transforms.test_time_views)."""
    if tta:
        run.check_tta()
    task = run.task

    def one_view(params, norm, images):
        logits = run.apply_fn({"params": params}, normalize(images, norm), train=False).astype(jnp.float32)
        if task.binary:
            return logits[:, 0] if task.num_logits == 1 else logits[:, 1] - logits[:, 0]
        return jax.nn.log_softmax(logits)

    def scores(params, norm, images):
        views = transforms.test_time_views(images, jnp) if tta else iter([images])
        return jnp.stack([one_view(params, norm, view) for view in views], axis=1)

    jitted = jax.jit(scores)
    return lambda images: jitted(run.params, run.normalization, images)


def combined_scores(task: Task, view_scores: np.ndarray) -> np.ndarray:
    """One logit-space score per tile: the view's own score, or the logit (log-probabilities) of
    the mean over the views' probabilities, computed without overflow."""
    s = np.asarray(view_scores, np.float64)
    if s.shape[1] == 1:
        return s[:, 0]
    if task.binary:  # logit(mean sigmoid(s_v)) = LSE log sigmoid(s_v) - LSE log sigmoid(-s_v)
        return special.logsumexp(-np.logaddexp(0, -s), axis=1) - special.logsumexp(-np.logaddexp(0, s), axis=1)
    return special.logsumexp(s, axis=1) - np.log(s.shape[1])


def probabilities(task: Task, scores: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """P(positive) (N,) for a binary task, else class probabilities (N, C), at ``temperature``."""
    scaled = np.asarray(scores, np.float64) / temperature
    return special.expit(scaled) if task.binary else special.softmax(scaled, axis=1)


def carry_threshold(threshold: float, from_temperature: float, to_temperature: float) -> float:
    """The threshold that makes the same decisions on probabilities at ``to_temperature`` as
    ``threshold`` on those at ``from_temperature`` (itself when they are equal)."""
    if from_temperature == to_temperature or threshold in (0.0, 1.0):
        return threshold
    return float(special.expit(special.logit(threshold) * from_temperature / to_temperature))


def uncertainty(task: Task, view_scores: np.ndarray, probs: np.ndarray) -> tuple[str, np.ndarray]:
    """(its measure, per-tile values): with several views their spread (the standard deviation of
    P(positive), or of the probability of the predicted class, over the views), else the
    predictive entropy of ``probs`` in bits (0: certain; 1 at P = 0.5 for a binary task)."""
    s = np.asarray(view_scores, np.float64)
    if s.shape[1] > 1:
        if task.binary:
            return TTA_SPREAD, special.expit(s).std(axis=1)
        per_view = np.exp(s)  # (N, V, C) probabilities
        predicted = probs.argmax(axis=1)
        return TTA_SPREAD, per_view[np.arange(len(s)), :, predicted].std(axis=1)
    p = np.stack([1 - probs, probs], axis=1) if task.binary else probs
    return ENTROPY, special.entr(p).sum(axis=1) / np.log(2)
