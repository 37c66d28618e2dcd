"""Slide-level results from PCAM's _meta.csv and per-tile uncertainty with its risk-coverage
curve, checked against scikit-learn and direct computations from predictions.csv."""

import json
import shutil
import types

import numpy as np
import pytest
from sklearn import metrics as skm

from conftest import train_in_process
from jaxpcam import evaluate
from jaxpcam.core.task import PCAM_ONE_LOGIT
from jaxpcam.data.pcam import open_split
from jaxpcam.data.transforms import apply_dihedral
from jaxpcam.evaluation.loading import load_run
from jaxpcam.evaluation.slides import read_meta
from jaxpcam.evaluation.uncertainty import risk_coverage

HEADER = "index,coord_y,coord_x,tumor_patch,center_tumor_patch,wsi"


def _csv(path):
    return np.genfromtxt(path, delimiter=",", names=True, dtype=None, encoding="utf-8")


def _slides_for(labels: np.ndarray) -> list[str]:
    """Two slides without tumour tiles and three with, four to eight tiles each."""
    negatives, positives = np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)
    names = np.empty(len(labels), object)
    names[negatives[:4]], names[negatives[4:8]] = "normal_001", "normal_002"
    rest = np.sort(np.concatenate([negatives[8:], positives]))
    for i, name in enumerate(("tumor_001", "tumor_002", "tumor_003")):
        names[rest[i::3]] = name
    return list(names)


def _write_meta(path, labels, coords=True, slides=None, drop=0, header=HEADER):
    slides = slides or _slides_for(labels)
    lines = [header]
    for i, (y, name) in enumerate(zip(labels[: len(labels) - drop], slides, strict=False)):
        cy, cx = (96 * (i // 6), 96 * (i % 6)) if coords else (0, 0)
        lines.append(f"{i},{cy},{cx},{bool(y)},{bool(y)},{name}")
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def with_slides(tiny_pcam, tmp_path_factory):
    """A run trained on the tiny data, and a copy of that data whose test meta has 5 slides with
    real coordinates."""
    root = tmp_path_factory.mktemp("slides")
    workdir, data = root / "run", root / "data"
    train_in_process(workdir, tiny_pcam)
    shutil.copytree(tiny_pcam, data)
    labels = np.asarray(open_split(data, "test").labels)
    _write_meta(data / "camelyonpatch_level_2_split_test_meta.csv", labels)
    return workdir, data


def test_slide_level_results_match_scikit_learn_on_the_aggregated_values(with_slides, capsys):
    workdir, data = with_slides
    capsys.readouterr()
    assert evaluate.main(["--workdir", str(workdir), "--split", "test", "--data_dir", str(data)]) == 0
    out = workdir / "eval" / "test"
    section = json.loads((out / "metrics.json").read_text())["slide_level"]
    preds = _csv(out / "predictions.csv")
    slides = np.asarray(_slides_for(preds["label"]))
    names = sorted(set(slides))
    truth = [int(preds["label"][slides == s].any()) for s in names]
    largest = [preds["probability"][slides == s].max() for s in names]
    mean = [preds["probability"][slides == s].mean() for s in names]
    assert section["count"] == 5 and section["positives"] == 3 and truth == [0, 0, 1, 1, 1]
    assert section["roc_auc"]["max"] == pytest.approx(skm.roc_auc_score(truth, largest), abs=1e-12)
    assert section["roc_auc"]["mean"] == pytest.approx(skm.roc_auc_score(truth, mean), abs=1e-12)
    rows = {r["slide"]: r for r in section["slides"]}
    top5 = np.sort(preds["probability"][slides == "tumor_001"])[::-1][:5].mean()
    assert rows["tumor_001"]["top5_mean"] == pytest.approx(top5, abs=1e-12)
    assert rows["normal_001"]["tiles"] == 4 and rows["normal_001"]["tumour_tiles"] == 0
    table = _csv(out / "slide_level.csv")
    assert sorted(table["slide"]) == names and "top5_mean" in table.dtype.names
    assert sorted(p.stem for p in (out / "slide_maps").glob("*.png")) == names
    printed = capsys.readouterr().out
    assert "slide level: 5 slides (3 with a tumour tile)" in printed and "normal_002" in printed


@pytest.mark.parametrize(
    "change, line",
    [
        (
            {"drop": 1},
            "its rows do not match the split: it lists 31 tiles, camelyonpatch_level_2_split_test_x.h5 holds 32",
        ),
        ({"header": HEADER.replace(",wsi", ",slide")}, "it has no 'wsi' column"),
        ({"labels_flipped": True}, "its rows do not match the split: center_tumor_patch differs from the labels"),
    ],
)
def test_a_meta_csv_that_does_not_fit_is_one_line_and_no_slide_results(tiny_pcam, tmp_path, messages, change, line):
    split = open_split(tiny_pcam, "test")
    labels = np.asarray(split.labels)
    x_path = tmp_path / "camelyonpatch_level_2_split_test_x.h5"
    written = 1 - labels if change.pop("labels_flipped", False) else labels
    _write_meta(tmp_path / "camelyonpatch_level_2_split_test_meta.csv", written, **change)
    assert read_meta(types.SimpleNamespace(x_path=x_path), labels) is None
    [said] = [m for m in messages if "meta.csv" in m]
    assert said.startswith("WARNING: ") and line in said and said.endswith(": no slide-level results")


def test_non_numeric_coordinates_are_one_line_and_leave_the_slide_table(tiny_pcam, tmp_path, messages):
    labels = np.asarray(open_split(tiny_pcam, "test").labels)
    meta = tmp_path / "camelyonpatch_level_2_split_test_meta.csv"
    _write_meta(meta, labels)
    lines = meta.read_text().splitlines()
    cells = lines[3].split(",")
    lines[3] = ",".join([cells[0], "abc", *cells[2:]])  # the third tile's coord_y
    meta.write_text("\n".join(lines) + "\n")
    split = types.SimpleNamespace(x_path=tmp_path / "camelyonpatch_level_2_split_test_x.h5")
    found = read_meta(split, labels)
    assert found is not None and found.coords is None and len(set(found.slides)) == 5
    [said] = [m for m in messages if "meta.csv" in m]
    assert said.startswith("WARNING: ") and "coord_y in row 3 is 'abc', not a number: no slide maps" in said
    _write_meta(meta, labels, coords=False)  # all 0, as the sample's: no maps, without a word
    messages.clear()
    assert read_meta(split, labels).coords is None and messages == []


def test_the_uncertainty_column_and_the_risk_coverage_curve(with_slides, tiny_pcam):
    workdir, _ = with_slides
    assert evaluate.main(["--workdir", str(workdir), "--split", "test"]) == 0
    out = workdir / "eval" / "test"
    preds, section = _csv(out / "predictions.csv"), json.loads((out / "metrics.json").read_text())["uncertainty"]
    p = preds["probability"]
    np.testing.assert_allclose(preds["uncertainty"], -(p * np.log2(p) + (1 - p) * np.log2(1 - p)), atol=1e-12)
    order = np.argsort(preds["uncertainty"], kind="stable")
    wrong = (preds["predicted"] != preds["label"])[order]
    assert section["aurc"] == pytest.approx(np.mean([wrong[:k].mean() for k in range(1, len(p) + 1)]), abs=1e-12)
    kept = order[: round(0.9 * len(p))]
    refer = section["refer_most_uncertain"]
    assert refer["kept"]["count"] == 29 and refer["all"]["count"] == 32
    assert refer["kept"]["accuracy"] == pytest.approx(np.mean(preds["predicted"][kept] == preds["label"][kept]))
    assert (out / "risk_coverage.csv").read_text().startswith("coverage,count,max_uncertainty,accuracy,sensitivity")
    assert (out / "risk_coverage.png").stat().st_size > 1000 and (out / "reliability.png").stat().st_size > 1000
    # with --tta: the spread of P(tumour) over the 8 views, as computed by hand
    assert evaluate.main(["--workdir", str(workdir), "--split", "test", "--tta"]) == 0
    tta = _csv(workdir / "eval" / "test_tta" / "predictions.csv")
    images = open_split(tiny_pcam, "test").read(np.arange(32))
    plain = load_run(workdir).predict_fn()
    views = [np.asarray(plain(apply_dihedral(images, np.full(32, k))), np.float64) for k in range(8)]
    np.testing.assert_allclose(tta["uncertainty"], np.std(views, axis=0), atol=1e-6)


def test_risk_coverage_on_a_known_case():
    labels = np.array([1, 1, 0, 0, 1, 0, 1, 0, 1, 0])
    probs = np.array([0.9, 0.8, 0.1, 0.2, 0.4, 0.6, 0.7, 0.3, 0.95, 0.05])  # wrong: indices 4 and 5
    values = np.arange(10.0)  # certainty in file order: the mistakes sit in the middle
    section = risk_coverage(PCAM_ONE_LOGIT, labels, probs, 0.5, values, "entropy")
    assert section["error_rate"] == 0.2
    assert section["aurc"] == pytest.approx(np.mean([0, 0, 0, 0, 1 / 5, 2 / 6, 2 / 7, 2 / 8, 2 / 9, 2 / 10]))
    by_coverage = {row["coverage"]: row for row in section["curve"]}
    assert by_coverage[0.4]["accuracy"] == 1.0 and by_coverage[0.6]["accuracy"] == pytest.approx(4 / 6)
    assert by_coverage[1.0]["sensitivity"] == 0.8 and section["refer_most_uncertain"]["kept"]["count"] == 9
