"""--tta on evaluate, predict and report: the mean over the 8 flips/rotations, its own threshold
and results, kept apart from those without TTA."""

import csv
import json
import shutil

import numpy as np
import pytest

from conftest import train_in_process
from jaxpcam import evaluate, predict, report
from jaxpcam.data.pcam import open_split
from jaxpcam.data.transforms import apply_dihedral
from jaxpcam.evaluation.loading import load_run


@pytest.fixture(scope="module")
def tiny_run(tiny_pcam, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("ttarun") / "run"
    train_in_process(workdir, tiny_pcam)
    return workdir


@pytest.fixture(scope="module")
def images(tiny_pcam):
    return open_split(tiny_pcam, "valid").read(np.arange(24))


def test_tta_probabilities_are_the_mean_over_the_eight_transforms(tiny_run, images):
    run = load_run(tiny_run)
    plain, tta = run.predict_fn(), run.predict_fn(tta=True)
    by_hand = [np.asarray(plain(apply_dihedral(images, np.full(len(images), k)))) for k in range(8)]
    assert not np.allclose(by_hand[0], by_hand[5], atol=1e-4)  # the model is not invariant by itself
    np.testing.assert_allclose(np.asarray(tta(images)), np.mean(by_hand, axis=0), rtol=1e-5, atol=1e-7)


def test_a_rotated_or_flipped_copy_gets_the_same_tta_probabilities(tiny_run, images):
    run = load_run(tiny_run)
    moved = apply_dihedral(images, np.arange(len(images)) % 8)  # every transform, image by image
    plain = run.predict_fn()
    assert np.abs(np.asarray(plain(images)) - np.asarray(plain(moved))).max() > 1e-3
    tta = run.predict_fn(tta=True)
    np.testing.assert_allclose(np.asarray(tta(moved)), np.asarray(tta(images)), rtol=1e-5, atol=1e-6)


def _csv(path):
    return np.genfromtxt(path, delimiter=",", names=True, dtype=None, encoding="utf-8")


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_with_and_without_tta_are_kept_side_by_side_and_never_mixed(tiny_run, tiny_pcam, tmp_path, messages, capsys):
    eval_dir = tiny_run / "eval"
    assert evaluate.main(["--workdir", str(tiny_run), "--tta"]) == 0
    with_tta = json.loads((eval_dir / "threshold_tta.json").read_text())
    assert with_tta["tta"] is True and json.loads((eval_dir / "valid_tta/metrics.json").read_text())["tta"] is True
    assert not (eval_dir / "threshold.json").exists() and not (eval_dir / "valid").exists()
    assert "TTA: mean over 8 flips/rotations" in capsys.readouterr().out

    # predict without TTA never uses the TTA threshold: like a run with no threshold at all, it
    # decides at 0.5 on uncalibrated probabilities, and says which threshold is missing and why
    test_x = tiny_pcam / "camelyonpatch_level_2_split_test_x.h5"
    args = ["--workdir", str(tiny_run), "--input", str(test_x)]
    messages.clear()
    assert predict.main([*args, "--output", str(tmp_path / "plain.csv")]) == 0
    [note] = [m for m in messages if m.startswith("deciding at 0.5")]
    assert "no decision threshold chosen without --tta" in note and "only one chosen with --tta" in note
    assert f"python -m jaxpcam.evaluate --workdir {tiny_run} chooses one" in note
    assert "at threshold 0.5000" in capsys.readouterr().out
    assert set(_csv(tmp_path / "plain.csv")["predicted"]) <= {0, 1}
    (tmp_path / "plain.csv").unlink()

    # test without TTA: its own threshold is chosen on valid without TTA; the TTA one stays
    tta_file = (eval_dir / "threshold_tta.json").read_bytes()
    messages.clear()
    assert evaluate.main(["--workdir", str(tiny_run), "--split", "test"]) == 0
    assert any("choosing the decision threshold on the valid split first, without --tta" in m for m in messages)
    without = json.loads((eval_dir / "threshold.json").read_text())
    assert without["tta"] is False and without["value"] != with_tta["value"]
    assert (eval_dir / "threshold_tta.json").read_bytes() == tta_file
    assert json.loads((eval_dir / "test/metrics.json").read_text())["threshold"] == without
    plain_test = (eval_dir / "test/metrics.json").read_bytes()

    # test with TTA: the stored TTA threshold, results in test_tta/; the plain ones stay
    messages.clear()
    assert evaluate.main(["--workdir", str(tiny_run), "--split", "test", "--tta"]) == 0
    assert not any("choosing" in m for m in messages)
    assert json.loads((eval_dir / "test_tta/metrics.json").read_text())["threshold"] == with_tta
    assert (eval_dir / "test/metrics.json").read_bytes() == plain_test
    assert "Wrote " + str(eval_dir / "test_tta") + "/" in capsys.readouterr().out

    # each prediction uses its own setting's threshold, and gives that evaluation's results
    assert predict.main([*args, "--output", str(tmp_path / "plain.csv")]) == 0
    assert predict.main([*args, "--output", str(tmp_path / "tta.csv"), "--tta"]) == 0
    for name, folder in (("plain.csv", "test"), ("tta.csv", "test_tta")):
        evaluated, predicted = _csv(eval_dir / folder / "predictions.csv"), _csv(tmp_path / name)
        np.testing.assert_array_equal(predicted["probability"], evaluated["probability"])
        np.testing.assert_array_equal(predicted["predicted"], evaluated["predicted"])
    assert not np.array_equal(_csv(tmp_path / "plain.csv")["probability"], _csv(tmp_path / "tta.csv")["probability"])

    # the report has both, as their own columns
    assert report.main([str(tiny_run), "--output", str(tmp_path / "r")]) == 0
    row = next(csv.DictReader((tmp_path / "r.csv").open()))  # the run's row (then mean, std, n)
    for folder, column in (("test", "test_roc_auc"), ("test_tta", "test_roc_auc_tta")):
        expected = json.loads((eval_dir / folder / "metrics.json").read_text())["model"]["roc_auc"]
        assert float(row[column]) == pytest.approx(expected)
    assert float(row["valid_roc_auc_tta"]) == pytest.approx(
        json.loads((eval_dir / "valid_tta/metrics.json").read_text())["model"]["roc_auc"]
    )
    assert "valid_roc_auc" not in row  # valid was evaluated with TTA only


def _as_before_the_tta_layout(workdir):
    """The run directory as an evaluation with --tta left it before TTA results had their own
    place: threshold.json and test/ saying "tta": true, nothing without TTA."""
    eval_dir = workdir / "eval"
    for name in ("threshold.json", "test", "valid"):
        path = eval_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    (eval_dir / "threshold_tta.json").rename(eval_dir / "threshold.json")
    (eval_dir / "test_tta").rename(eval_dir / "test")
    shutil.rmtree(eval_dir / "valid_tta", ignore_errors=True)
    shutil.rmtree(eval_dir / "thresholds")  # nor per-checkpoint thresholds


def test_a_tta_threshold_from_before_the_layout_is_used_only_with_tta(tiny_run, tiny_pcam, tmp_path, messages, capsys):
    workdir = tmp_path / "older"
    assert evaluate.main(["--workdir", str(tiny_run), "--split", "test", "--tta"]) == 0
    shutil.copytree(tiny_run, workdir)
    _as_before_the_tta_layout(workdir)
    older = json.loads((workdir / "eval/threshold.json").read_text())
    older_results = (workdir / "eval/test/metrics.json").read_bytes()
    test_x = tiny_pcam / "camelyonpatch_level_2_split_test_x.h5"
    args = ["--workdir", str(workdir), "--input", str(test_x)]
    messages.clear()
    assert predict.main([*args, "--output", str(tmp_path / "plain.csv")]) == 0  # never for plain predictions
    assert any(m.startswith("deciding at 0.5") and "only one chosen with --tta" in m for m in messages)
    messages.clear()
    assert predict.main([*args, "--output", str(tmp_path / "tta.csv"), "--tta"]) == 0
    assert any(f"decision threshold {older['value']:.4f}" in m and "threshold.json" in m for m in messages)

    # the report reads the older test/ for what it says it is: an evaluation with TTA
    assert report.main([str(workdir), "--output", str(tmp_path / "r")]) == 0
    row = next(csv.DictReader((tmp_path / "r.csv").open()))
    assert "test_roc_auc_tta" in row and "test_roc_auc" not in row

    # an evaluation without TTA first moves the older TTA files to their own place, saying so
    messages.clear()
    assert evaluate.main(["--workdir", str(workdir), "--split", "test"]) == 0
    moved = [m for m in messages if m.startswith("moved ")]
    assert len(moved) == 2 and all("made with --tta" in m for m in moved)
    older_file, new_file = workdir / "eval/threshold.json", workdir / "eval/threshold_tta.json"
    assert f"moved {older_file} to {new_file}: it was made with --tta, before TTA results had their own place" in moved
    assert json.loads((workdir / "eval/threshold_tta.json").read_text()) == older
    assert (workdir / "eval/test_tta/metrics.json").read_bytes() == older_results
    assert json.loads((workdir / "eval/threshold.json").read_text())["tta"] is False
    assert json.loads((workdir / "eval/test/metrics.json").read_text())["tta"] is False


def test_tta_refuses_non_square_images_and_warns_for_models_trained_without_flips(tiny_run, messages):
    import dataclasses

    from jaxpcam.core.errors import UserError

    run = load_run(tiny_run)
    run.check_tta()
    assert not any("WARNING" in m for m in messages)
    unaugmented = run.config.copy_and_resolve_references()
    unaugmented.data.augment = False
    dataclasses.replace(run, config=unaugmented).check_tta()
    assert any("WARNING: --tta on a model trained without data.augment" in m for m in messages)
    with pytest.raises(UserError, match="--tta needs square images; this model takes 96x64"):
        dataclasses.replace(run, data_profile={"image_shape": [96, 64, 3]}).predict_fn(tta=True)


@pytest.mark.parametrize(
    "content, reason",
    [
        ('{"value": 0.', "not a JSON object"),  # e.g. a disk that filled up while someone edited it
        ('{"checkpoint_step": 64}', "not the record jaxpcam.evaluate writes: its value is null, not a number in 0..1"),
        ('{"value": NaN, "rule": "f2", "checkpoint_step": 64}', "not the record jaxpcam.evaluate writes: its value is"),
        (
            '{"value": 0.3, "rule": "f2", "checkpoint_step": 64, "temperature": {"value": 0}}',
            "not the record jaxpcam.evaluate writes: its temperature is",
        ),
    ],
)
def test_a_damaged_threshold_stops_predict_and_export_and_evaluate_chooses_it_again(
    tiny_run, tiny_pcam, tmp_path, messages, capsys, content, reason
):
    from jaxpcam import export

    threshold_file = tiny_run / "eval" / "threshold.json"
    threshold_file.parent.mkdir(exist_ok=True)
    threshold_file.write_text(content)
    test_x = tiny_pcam / "camelyonpatch_level_2_split_test_x.h5"
    args = ["--workdir", str(tiny_run), "--input", str(test_x), "--output", str(tmp_path / "p.csv")]
    capsys.readouterr()
    assert predict.main(args) == 2
    error = _one_line_error(capsys)
    assert error.startswith(f"error: {threshold_file} is damaged ({reason}")
    assert error.endswith("run python -m jaxpcam.evaluate again to rewrite it")
    assert not (tmp_path / "p.csv").exists()
    assert export.main(["--workdir", str(tiny_run), "--output", str(tmp_path / "exported")]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == error  # after its "exporting ..." line
    messages.clear()
    assert evaluate.main(["--workdir", str(tiny_run), "--split", "test"]) == 0
    assert any(m.startswith(f"{threshold_file} is damaged ({reason}") for m in messages), messages
    assert any(m.endswith("): choosing the decision threshold again") for m in messages)
    assert json.loads(threshold_file.read_text())["tta"] is False
    assert predict.main(args) == 0
