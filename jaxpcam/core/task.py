"""The task a run solves, decided once from its config and passed to whatever needs it.

PCAM is binary (tumour in the centre or not) whether the model has one logit (sigmoid BCE, like
torch's BCEWithLogitsLoss) or two (softmax cross-entropy, like the seeds' CrossEntropyLoss):
either way the probability that counts is P(positive), so ROC-AUC, F2, the decision threshold,
slices and galleries are the same for both. The digits task is multi-class over the kept digits.

Below both training and evaluation: it imports neither.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxpcam.core import metrics as metrics_lib

# Label 1: tumour tissue in the centre 32x32 of the patch; every plot and report uses these words.
PCAM_CLASS_NAMES = ("no tumour", "tumour")


@dataclasses.dataclass(frozen=True)
class Task:
    """Hashable, so jitted steps take it as a static argument."""

    binary: bool  # one positive class (label 1) against the rest
    num_logits: int
    class_names: tuple[str, ...]  # label i is class_names[i]

    def loss(self, logits: jax.Array, labels: jax.Array) -> jax.Array:
        """Per-example loss: sigmoid BCE for one logit, else softmax cross-entropy."""
        if self.num_logits == 1:
            return optax.sigmoid_binary_cross_entropy(logits[:, 0], labels.astype(jnp.float32))
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels)

    def probabilities(self, logits: jax.Array) -> jax.Array:
        """(B,) P(positive) for a binary task (from one logit or two), else (B, C) softmax."""
        if self.num_logits == 1:
            return jax.nn.sigmoid(logits[:, 0])
        probs = jax.nn.softmax(logits)
        return probs[:, 1] if self.binary else probs

    def predictions(self, logits: jax.Array) -> jax.Array:
        """(B,) predicted labels: P(positive) >= 0.5 for a binary task (val_accuracy's rule), else
        the most probable class."""
        if self.binary:
            return (self.probabilities(logits) >= 0.5).astype(jnp.int32)
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)

    def metrics(self, labels: np.ndarray, probs: np.ndarray) -> dict[str, float]:
        """The per-epoch metrics (each logged as val_<name>)."""
        if self.binary:
            return metrics_lib.binary_metrics(labels, probs)
        return metrics_lib.multiclass_metrics(labels, probs)

    @property
    def metric_names(self) -> tuple[str, ...]:
        """The validation fields of metrics.jsonl: what checkpoint.best_metric may name."""
        keys = metrics_lib.BINARY_METRICS if self.binary else metrics_lib.MULTICLASS_METRICS
        return ("val_loss", *(f"val_{key}" for key in keys))


PCAM_ONE_LOGIT = Task(binary=True, num_logits=1, class_names=PCAM_CLASS_NAMES)


def is_binary_record(record: dict) -> bool:
    """Whether a metrics.jsonl line was written by a binary task, from its validation fields:
    for a run whose config.json is gone (task_for needs the config)."""
    return f"val_{metrics_lib.BINARY_METRICS[1]}" in record  # val_roc_auc: binary tasks only


def task_for(config) -> Task:
    """The task of a whole config: a ConfigDict, or the plain dict of a config.json or checkpoint
    made whole by run.keys.with_defaults."""
    data, model = config["data"], config["model"]
    if data["dataset"] == "digits":
        digits = tuple(int(d) for d in data["digits"])
        return Task(binary=False, num_logits=len(digits), class_names=tuple(str(d) for d in digits))
    return Task(binary=True, num_logits=int(model["num_classes"]), class_names=PCAM_CLASS_NAMES)
