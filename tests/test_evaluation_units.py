"""Evaluation building blocks on small constructed arrays: metrics, threshold, slices, drift, plots."""

import math

import numpy as np
import pytest
from sklearn import metrics as skm

from jaxpcam.core.errors import UserError
from jaxpcam.core.metrics import binary_report, confusion_cells, majority_baseline, multiclass_report, show
from jaxpcam.core.task import PCAM_CLASS_NAMES
from jaxpcam.data.profile import group_spread
from jaxpcam.data.stats import image_features
from jaxpcam.evaluation import plots
from jaxpcam.evaluation.drift import FALSE_ALARM, check_drift
from jaxpcam.evaluation.slices import IntensitySlicing, slice_table
from jaxpcam.evaluation.summary_text import confusion_lines
from jaxpcam.evaluation.thresholds import choose_threshold


def test_binary_report_agrees_with_scikit_learn_on_random_predictions():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 500)
    probs = np.clip(0.3 * labels + rng.random(500) * 0.7, 0, 1)
    r = binary_report(labels, probs, threshold=0.6)
    preds = probs >= 0.6
    assert r["accuracy"] == skm.accuracy_score(labels, preds)
    assert r["precision"] == skm.precision_score(labels, preds)
    assert r["recall"] == skm.recall_score(labels, preds)
    assert r["f1"] == skm.f1_score(labels, preds)
    assert r["f2"] == skm.fbeta_score(labels, preds, beta=2)
    assert r["balanced_accuracy"] == skm.balanced_accuracy_score(labels, preds)
    assert r["roc_auc"] == skm.roc_auc_score(labels, probs)
    assert r["pr_auc"] == skm.average_precision_score(labels, probs)
    assert r["log_loss"] == pytest.approx(skm.log_loss(labels, probs), rel=1e-12)
    assert r["brier"] == pytest.approx(np.mean((probs - labels) ** 2), rel=1e-12)
    tn, fp, fn, tp = skm.confusion_matrix(labels, preds).ravel()
    assert r["confusion_matrix"] == [[tn, fp], [fn, tp]]
    assert (r["count"], r["positives"]) == (500, int(labels.sum()))


def test_multiclass_report_agrees_with_scikit_learn():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 6, 300)
    logits = rng.normal(size=(300, 6)) + 2.0 * np.eye(6)[labels]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    r = multiclass_report(labels, probs)
    preds = probs.argmax(axis=1)
    assert r["accuracy"] == skm.accuracy_score(labels, preds)
    assert r["macro_f1"] == pytest.approx(skm.f1_score(labels, preds, average="macro"), rel=1e-12)
    assert r["balanced_accuracy"] == skm.balanced_accuracy_score(labels, preds)
    assert r["per_class"]["3"]["recall"] == pytest.approx(skm.recall_score(labels, preds, average=None)[3])
    assert r["confusion_matrix"] == skm.confusion_matrix(labels, preds).tolist()
    assert r["log_loss"] == pytest.approx(skm.log_loss(labels, probs), rel=1e-9)


def test_undefined_metrics_are_nan_and_shown_as_undefined():
    r = binary_report(np.zeros(4, int), np.array([0.1, 0.2, 0.3, 0.4]), 0.5)
    assert math.isnan(r["roc_auc"]) and math.isnan(r["recall"]) and math.isnan(r["precision"])
    assert show(r["roc_auc"]) == "undefined" and show(None) == "undefined" and show(0.0) == "0.0000"


def test_majority_baseline_predicts_the_reference_majority():
    probs = majority_baseline(np.array([1, 1, 1, 0]), np.array([0, 1, 0]), num_classes=1)
    assert np.allclose(probs, 0.75)
    r = binary_report(np.array([0, 1, 0]), probs, 0.5)
    assert r["recall"] == 1.0 and r["accuracy"] == pytest.approx(1 / 3) and r["roc_auc"] == 0.5
    multi = majority_baseline(np.array([2, 2, 0]), np.zeros(5, int), num_classes=3)
    assert multi.shape == (5, 3) and (multi.argmax(axis=1) == 2).all()


# F2 by threshold on this case: .1 -> .833, .2 -> .882, .4 -> .9375, .6 -> .667, .7 -> .714, .9 -> .385
LABELS = np.array([0, 0, 0, 1, 1, 1])
PROBS = np.array([0.1, 0.2, 0.6, 0.4, 0.7, 0.9])


def test_f2_threshold_on_a_case_with_a_known_answer():
    t = choose_threshold(LABELS, PROBS, "f2")
    assert t.value == 0.4
    assert (t.precision, t.recall) == (0.75, 1.0) and t.f2 == pytest.approx(0.9375)


def test_recall_threshold_is_the_highest_reaching_the_target():
    assert choose_threshold(LABELS, PROBS, "recall", target_recall=0.6).value == 0.7
    assert choose_threshold(LABELS, PROBS, "recall", target_recall=1.0).value == 0.4
    with pytest.raises(UserError, match="one class"):
        choose_threshold(np.ones(3, int), np.array([0.1, 0.5, 0.9]))


def test_slice_metrics_on_a_constructed_case():
    labels = np.array([1, 1, 0, 0, 1, 0, 1, 0])
    probs = np.array([0.9, 0.2, 0.1, 0.8, 0.7, 0.3, 0.6, 0.4])
    brightness = np.array([10.0, 20, 30, 40, 200, 210, 230, 240])
    masks = IntensitySlicing(dark_below=45.0, bright_above=225.0).masks(brightness)
    rows = {r["slice"].split()[0]: r for r in slice_table(labels, probs, 0.5, masks)}
    dark, bright, everything = rows["dark"], rows["bright"], rows["all"]
    assert (dark["count"], dark["positives"], dark["accuracy"], dark["recall"]) == (4, 2, 0.5, 0.5)
    assert dark["roc_auc"] == 0.75  # positives .9,.2 vs negatives .1,.8: 3 of 4 pairs ordered
    assert (bright["count"], bright["positives"], bright["accuracy"]) == (2, 1, 1.0)
    assert everything["accuracy"] == 0.75 and everything["recall"] == 0.75
    assert dark["accuracy_gap"] == -0.25
    one_class = slice_table(labels, probs, 0.5, {"negatives": labels == 0})[1]
    assert math.isnan(one_class["roc_auc"]) and math.isnan(one_class["recall"])
    assert show(one_class["roc_auc"]) == "undefined"


def test_dark_slice_by_quantile():
    feature = np.arange(100.0)
    masks = IntensitySlicing(dark_quantile=0.1).masks(feature)
    dark = next(m for name, m in masks.items() if name.startswith("dark"))
    assert dark.sum() == 10 and dark[:10].all()


def _tissue(rng, n, level):
    return np.clip(rng.normal(level, 25, size=(n, 96, 96, 3)), 0, 255).astype(np.uint8)


def _slides(rng, slides, per_slide):
    """Images of ``slides`` slides, each with its own brightness level, and each image's slide."""
    images = np.concatenate([_tissue(rng, per_slide, level) for level in rng.uniform(150, 200, slides)])
    return images, np.repeat(np.arange(slides), per_slide)


def _profile(features, slides=None):
    """A profile as jaxpcam.data.profile writes it; without ``slides`` as older checkpoints hold it."""
    quantiles = {name: {"0.01": float(np.quantile(v, 0.01)), "0.99": float(np.quantile(v, 0.99))}
                 for name, v in features.items()}  # fmt: skip
    profile = {"features": {n: {"mean": float(v.mean()), "std": float(v.std()), "quantiles": quantiles[n]}
                            for n, v in features.items()}}  # fmt: skip
    if slides is not None:
        profile.update(spread_from="slides", groups=len(np.unique(slides)))
        for name, values in features.items():
            profile["features"][name].update(group_spread(values, slides))
    return profile


def test_drift_passes_a_new_slide_and_fires_on_a_darker_scanner_with_the_numbers():
    rng = np.random.default_rng(2)
    train, slides = _slides(rng, 30, 20)
    profile = _profile(image_features(train), slides)
    new_slides = [_tissue(rng, 20, level) for level in rng.uniform(150, 200, 20)]
    checks = [check_drift(profile, image_features(slide)) for slide in new_slides]
    assert not any(c.drifted for c in checks)
    assert checks[0].message().startswith("no input drift:") and "p = " in checks[0].message()
    darker = np.clip(new_slides[0].astype(np.int16) - 60, 0, 255).astype(np.uint8)  # a darker scanner
    check = check_drift(profile, image_features(darker))
    assert check.drifted and check.p_value < FALSE_ALARM and check.features["brightness"]["effect"] < -3
    message = check.message()
    assert message.startswith("input drift:") and "DRIFT WARNING" not in message
    name, worst = check.worst()
    assert f"{name}: mean {worst['input_mean']:.1f}" in message
    assert f"{worst['effect']:+.2f} sd of a new slide's 20-image mean given the spread of 30 training slides" in message
    assert f"p = {check.p_value:.2g} over 8 features, about 1 in " in message


MATRIX = [[1204, 238], [31, 1311]]
NAMES = list(PCAM_CLASS_NAMES)


def test_confusion_cells_are_count_and_share_of_the_true_class():
    assert confusion_cells(MATRIX) == [[("1,204", "83.5%"), ("238", "16.5%")], [("31", "2.3%"), ("1,311", "97.7%")]]
    assert confusion_cells([[0, 0], [1, 3]])[0] == [("0", "-"), ("0", "-")]  # a class absent from the data


def _texts(artists) -> list[str]:
    return [a.get_text() for a in artists]


def test_confusion_plot_annotates_every_cell_and_has_a_colour_bar(tmp_path):
    fig = plots.confusion_figure(MATRIX, NAMES, "confusion")
    ax, colour_bar = fig.axes
    assert _texts(ax.texts) == ["1,204\n83.5%", "238\n16.5%", "31\n2.3%", "1,311\n97.7%"]
    assert _texts(ax.get_xticklabels()) == _texts(ax.get_yticklabels()) == NAMES
    assert colour_bar.get_ylabel() == "share of the true class"
    unannotated = plots.confusion_figure(MATRIX, NAMES, "confusion")
    for text in unannotated.axes[0].texts:
        text.set_visible(False)
    drawn = plots._finish(fig, tmp_path / "a.png") != plots._finish(unannotated, tmp_path / "b.png")
    assert drawn.any(axis=2).sum() > 200  # the numbers are drawn in the PNG, not only attached


def test_score_histogram_speaks_the_task_class_names():
    labels = np.array([0, 0, 1, 1, 1])
    fig = plots.score_figure(labels, np.array([0.1, 0.6, 0.4, 0.8, 0.9]), 0.5, ["no tumour", "tumour"])
    ax = fig.axes[0]
    legend = _texts(ax.get_legend().get_texts())
    assert legend == ["true class: no tumour (2)", "true class: tumour (3)", "threshold 0.5000"]
    assert ax.get_xlabel() == "P(tumour)"


def test_printed_confusion_uses_the_same_names_and_numbers():
    lines = confusion_lines(MATRIX, NAMES, "confusion at threshold 0.2150")
    assert lines[0].startswith("\n  confusion at threshold 0.2150: rows true class")
    assert lines[1].split() == ["no", "tumour", "tumour"]
    assert lines[2].split() == ["no", "tumour", "1,204", "(83.5%)", "238", "(16.5%)"]
    assert lines[3].split() == ["tumour", "31", "(2.3%)", "1,311", "(97.7%)"]


def test_gallery_titles_say_which_class_was_called_which():
    from jaxpcam.evaluation.evaluate import _gallery_title

    assert _gallery_title("false_negatives", NAMES) == "false negatives (tumour called no tumour)"
    assert _gallery_title("false_positives", NAMES) == "false positives (no tumour called tumour)"
    assert _gallery_title("mistakes", ["4", "5"]) == "mistakes"


def test_drift_check_allows_for_how_many_images_it_sees():
    """The same shift of the mean is ordinary for 2 images of a slide and unusual for 2,000."""
    profile = {"spread_from": "slides", "groups": 40, "features": {"brightness": {
        "center": 100.0, "between_var": 1.0, "within_var": 400.0, "mean": 100.0, "std": 20.0}}}  # fmt: skip
    few, many = ({"brightness": np.full(n, 105.0)} for n in (2, 2000))
    assert not check_drift(profile, few).drifted
    assert check_drift(profile, many).drifted


def test_old_profiles_without_a_slide_spread_get_the_old_check_and_say_so():
    rng = np.random.default_rng(3)
    train, _ = _slides(rng, 10, 40)
    profile = _profile(image_features(train))
    same = _tissue(rng, 30, 175)
    darker = np.clip(same.astype(np.int16) - 60, 0, 255).astype(np.uint8)
    assert not check_drift(profile, image_features(same)).drifted
    check = check_drift(profile, image_features(darker))
    assert check.drifted and check.method == "legacy" and "old check" in check.message()
