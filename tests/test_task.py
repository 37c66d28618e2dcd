"""The task decides loss, probabilities and metrics once; PCAM with two logits is binary too."""

import json

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxpcam.config import base_config
from jaxpcam.core.task import task_for


def _config(dataset="pcam", num_classes=1):
    config = base_config()
    config.data.dataset, config.model.num_classes = dataset, num_classes
    return config


def test_pcam_is_binary_with_one_logit_or_two():
    one, two = task_for(_config()), task_for(_config(num_classes=2))
    assert one.binary and two.binary and one.class_names == two.class_names == ("no tumour", "tumour")
    logits = jnp.array([[0.3, 1.2], [2.0, -1.0]])
    np.testing.assert_allclose(two.probabilities(logits), [1 / (1 + np.exp(-0.9)), 1 / (1 + np.exp(3.0))], rtol=1e-6)
    np.testing.assert_allclose(one.probabilities(logits[:, 1:]), 1 / (1 + np.exp(-np.array([1.2, -1.0]))), rtol=1e-6)
    labels = jnp.array([1, 0])
    np.testing.assert_allclose(
        two.loss(logits, labels), optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    )
    assert one.metric_names == two.metric_names == ("val_loss", "val_accuracy", "val_roc_auc", "val_f2")


def test_digits_are_multiclass_named_by_digit():
    task = task_for(_config("digits", 6))
    assert not task.binary and task.class_names == ("4", "5", "6", "7", "8", "9")
    assert task.probabilities(jnp.zeros((3, 6))).shape == (3, 6)
    assert task.metric_names[:2] == ("val_loss", "val_accuracy") and "val_roc_auc" not in task.metric_names


def test_metrics_have_the_names_the_task_announces():
    labels = np.array([0, 1, 0, 1, 1])
    p = np.array([0.1, 0.8, 0.3, 0.6, 0.9])
    for config, probs in (
        (_config(), p),
        (_config(num_classes=2), p),  # P(positive) from the softmax: the same metrics
        (_config("digits", 6), np.random.default_rng(0).dirichlet(np.ones(6), 5)),
    ):
        task = task_for(config)
        assert ("val_loss", *(f"val_{k}" for k in task.metrics(labels, probs))) == task.metric_names


def test_a_task_is_a_static_jit_argument():
    assert hash(task_for(_config())) == hash(task_for(_config()))


def test_a_two_logit_pcam_run_logs_roc_auc_and_evaluates_like_a_one_logit_run(tiny_pcam, tmp_path):
    from conftest import train_in_process
    from jaxpcam.evaluation.evaluate import EvalOptions, evaluate_run

    workdir = tmp_path / "run"
    lines = train_in_process(workdir, tiny_pcam, **{"model.num_classes": 2, "training.epochs": 1})
    assert any(line.startswith("best epoch 1 by val_roc_auc") for line in lines)
    (record,) = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert 0 <= record["val_roc_auc"] <= 1 and "val_f2" in record
    report = evaluate_run(workdir, EvalOptions(split="valid", checkpoint="best"))
    assert report["threshold"]["rule"] == "f2" and 0 < report["threshold"]["value"] < 1
    assert report["model"]["roc_auc"] == pytest.approx(record["val_roc_auc"], abs=1e-12)
    assert (workdir / "eval" / "valid" / "roc.png").is_file()
    header = (workdir / "eval" / "valid" / "predictions.csv").read_text().splitlines()[0]
    assert header == "index,label,probability,predicted,uncertainty"
