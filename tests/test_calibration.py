"""Calibration and temperature scaling, checked against references written here from their
definitions (Guo et al.'s ECE, SciPy's minimiser of scikit-learn's log-loss), and the
temperature carried into predict, export and report without changing a decision."""

import csv
import itertools
import json

import numpy as np
import pytest
from scipy import optimize, special
from sklearn import metrics as skm

from conftest import train_in_process
from jaxpcam import evaluate, predict, report
from jaxpcam import export as export_command
from jaxpcam.core.task import PCAM_ONE_LOGIT, Task
from jaxpcam.data.normalization import normalize
from jaxpcam.data.pcam import open_split
from jaxpcam.evaluation.calibration import ece, fit_temperature, reliability_bins
from jaxpcam.evaluation.loading import load_run
from jaxpcam.evaluation.thresholds import choose_threshold


@pytest.fixture(scope="module")
def tiny_run(tiny_pcam, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("calibrun") / "run"
    train_in_process(workdir, tiny_pcam)
    assert evaluate.main(["--workdir", str(workdir)]) == 0
    assert evaluate.main(["--workdir", str(workdir), "--split", "test"]) == 0
    return workdir


def _csv(path):
    return np.genfromtxt(path, delimiter=",", names=True, dtype=None, encoding="utf-8")


def _guo_ece(labels, probs, bins=15):
    """Guo et al. 2017, written out: confidence of the predicted class, bins (lo, hi]."""
    predicted = (probs >= 0.5).astype(int)
    confidence = np.where(predicted == 1, probs, 1 - probs)
    correct = predicted == labels
    edges = np.linspace(0, 1, bins + 1)
    total = 0.0
    for lo, hi in itertools.pairwise(edges):
        inside = (confidence > lo) & (confidence <= hi)
        if inside.any():
            total += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return total


def _logits(run, split_dir, split):
    """The model's logits straight from its apply function (not jaxpcam's scoring code)."""
    images = open_split(split_dir, split).read(np.arange(len(open_split(split_dir, split))))
    out = run.apply_fn({"params": run.params}, normalize(images, run.normalization), train=False)
    return np.asarray(out, np.float64)[:, 0]


def _scipy_temperature(labels, logits):
    loss = lambda t: skm.log_loss(labels, special.expit(logits / t[0]), labels=[0, 1])  # noqa: E731
    return float(optimize.minimize(loss, [1.0], method="Nelder-Mead", options={"xatol": 1e-9, "fatol": 1e-14}).x[0])


def test_ece_and_its_equal_mass_variant_equal_a_direct_computation_from_predictions_csv(tiny_run):
    for split in ("valid", "test"):
        preds = _csv(tiny_run / "eval" / split / "predictions.csv")
        calibration = json.loads((tiny_run / "eval" / split / "metrics.json").read_text())["calibration"]
        assert calibration["ece"] == pytest.approx(_guo_ece(preds["label"], preds["probability"]), abs=1e-12)
    # equal mass: 15 bins of (nearly) equal count, by hand on 30 tiles (2 per bin)
    confidence = np.linspace(0.5, 1.0, 30)
    correct = np.arange(30) % 3 > 0
    by_hand = sum(abs(correct[i : i + 2].mean() - confidence[i : i + 2].mean()) * 2 / 30 for i in range(0, 30, 2))
    assert ece(confidence, correct, equal_mass=True) == pytest.approx(by_hand, abs=1e-12)
    assert [n for n, _, _ in reliability_bins(confidence, correct, equal_mass=True)] == [2] * 15


def test_the_fitted_temperature_is_scipys_minimiser_of_the_nll(tiny_run, tiny_pcam):
    stored = json.loads((tiny_run / "eval" / "threshold.json").read_text())
    temperature = stored["temperature"]
    assert temperature["fitted_on"] == "valid" and stored["data"]["files"]  # with the data it was fitted on
    run = load_run(tiny_run)
    labels = np.asarray(open_split(tiny_pcam, "valid").labels)
    expected = _scipy_temperature(labels, _logits(run, tiny_pcam, "valid"))
    assert temperature["value"] == pytest.approx(expected, abs=1e-4)
    assert temperature["value"] != pytest.approx(1.0, abs=1e-2)  # the tiny model is miscalibrated
    assert temperature["nll_after"] < temperature["nll_before"]
    # and on made-up scores of a two-class softmax model and a sigmoid one alike
    rng = np.random.default_rng(0)
    scores = rng.normal(0, 4, 400)
    y = (rng.random(400) < special.expit(scores / 2.5)).astype(int)  # over-confident by about 2.5
    for task in (PCAM_ONE_LOGIT, Task(binary=True, num_logits=2, class_names=("a", "b"))):
        assert fit_temperature(task, y, scores)["value"] == pytest.approx(_scipy_temperature(y, scores), abs=1e-4)


def test_temperature_scaling_changes_no_decision_at_the_stored_threshold(tiny_run, tiny_pcam):
    """Refactor-proof: the decisions evaluate writes equal those of the raw model probabilities
    at the threshold chosen on its raw valid probabilities, while the probabilities moved."""
    run = load_run(tiny_run)
    raw = {s: special.expit(_logits(run, tiny_pcam, s)) for s in ("valid", "test")}
    raw_threshold = choose_threshold(np.asarray(open_split(tiny_pcam, "valid").labels), raw["valid"]).value
    for split in ("valid", "test"):
        written = _csv(tiny_run / "eval" / split / "predictions.csv")
        np.testing.assert_array_equal(written["predicted"], (raw[split] >= raw_threshold).astype(int))
        assert np.abs(written["probability"] - raw[split]).max() > 1e-3
        ranks = np.argsort(written["probability"], kind="stable")
        np.testing.assert_array_equal(ranks, np.argsort(raw[split], kind="stable"))
    metrics = json.loads((tiny_run / "eval" / "test" / "metrics.json").read_text())
    assert metrics["calibration"]["uncalibrated"]["ece"] != metrics["calibration"]["ece"]
    assert metrics["model"]["roc_auc"] == pytest.approx(skm.roc_auc_score(written["label"], raw["test"]), abs=1e-12)


def test_predict_export_and_report_use_the_temperature(tiny_run, tiny_pcam, tmp_path, capsys):
    stored = json.loads((tiny_run / "eval" / "threshold.json").read_text())
    test_x = tiny_pcam / "camelyonpatch_level_2_split_test_x.h5"
    capsys.readouterr()
    args = ["--workdir", str(tiny_run), "--input", str(test_x), "--output", str(tmp_path / "p.csv")]
    assert predict.main(args) == 0
    assert f"(temperature {stored['temperature']['value']:.4f})" in capsys.readouterr().out
    predicted, evaluated = _csv(tmp_path / "p.csv"), _csv(tiny_run / "eval" / "test" / "predictions.csv")
    for column in ("probability", "predicted", "uncertainty"):
        np.testing.assert_array_equal(predicted[column], evaluated[column])

    assert export_command.main(["--workdir", str(tiny_run), "--output", str(tmp_path / "export")]) == 0
    card = json.loads((tmp_path / "export" / "model.json").read_text())
    assert card["calibration"]["temperature"] == stored["temperature"]["value"]
    assert card["decision"]["threshold"] == stored["value"]
    import jax

    model = jax.export.deserialize((tmp_path / "export" / "model.jaxexport").read_bytes())
    images = open_split(tiny_pcam, "test").read(np.arange(32))
    np.testing.assert_allclose(np.asarray(model.call(images)), evaluated["probability"], rtol=0, atol=1e-6)

    assert report.main([str(tiny_run), "--output", str(tmp_path / "r")]) == 0
    row = next(csv.DictReader((tmp_path / "r.csv").open()))
    metrics = json.loads((tiny_run / "eval" / "test" / "metrics.json").read_text())
    assert float(row["test_ece"]) == pytest.approx(metrics["calibration"]["ece"])
    assert float(row["test_ece_uncalibrated"]) == pytest.approx(metrics["calibration"]["uncalibrated"]["ece"])
    assert float(row["test_temperature"]) == pytest.approx(stored["temperature"]["value"])
    assert float(row["test_aurc"]) == pytest.approx(metrics["uncertainty"]["aurc"])
    assert float(row["test_brier"]) == pytest.approx(metrics["model"]["brier"])


def test_without_any_threshold_predict_decides_at_half_as_with_only_the_other_settings(tiny_run, tiny_pcam, tmp_path,
                                                                                        messages, capsys):  # fmt: skip
    import shutil

    workdir = tmp_path / "run"
    shutil.copytree(tiny_run, workdir, ignore=shutil.ignore_patterns("eval"))
    test_x = tiny_pcam / "camelyonpatch_level_2_split_test_x.h5"
    capsys.readouterr()
    assert predict.main(["--workdir", str(workdir), "--input", str(test_x), "--output", str(tmp_path / "p.csv")]) == 0
    [note] = [m for m in messages if m.startswith("deciding at 0.5")]
    assert "no decision threshold chosen without --tta" in note and "(none is stored)" in note
    assert "at threshold 0.5000" in capsys.readouterr().out and "on uncalibrated probabilities" in note
    written = _csv(tmp_path / "p.csv")
    run = load_run(workdir)
    raw = special.expit(_logits(run, tiny_pcam, "test"))
    np.testing.assert_allclose(written["probability"], raw, atol=1e-6)  # uncalibrated: T = 1
    np.testing.assert_array_equal(written["predicted"], (written["probability"] >= 0.5).astype(int))
