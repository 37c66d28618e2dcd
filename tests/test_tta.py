"""--tta on evaluate and predict: the mean over the 8 flips/rotations, and its threshold."""

import json

import numpy as np
import pytest

from conftest import train_in_process
from jaxpcam import evaluate, predict
from jaxpcam.data import open_split
from jaxpcam.data.pipeline import apply_dihedral
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


def test_the_threshold_carries_its_tta_setting_and_is_never_mixed(tiny_run, tiny_pcam, tmp_path, messages, capsys):
    threshold_file = tiny_run / "eval" / "threshold.json"
    assert evaluate.main(["--workdir", str(tiny_run), "--tta"]) == 0
    with_tta = json.loads(threshold_file.read_text())
    assert with_tta["tta"] is True and json.loads((tiny_run / "eval/valid/metrics.json").read_text())["tta"] is True
    assert "TTA: mean over 8 flips/rotations" in capsys.readouterr().out

    # test without --tta: the threshold is chosen again on valid without TTA, and that is said
    messages.clear()
    assert evaluate.main(["--workdir", str(tiny_run), "--split", "test"]) == 0
    said = [m for m in messages if "choosing it again" in m]
    assert len(said) == 1 and "chosen with --tta" in said[0] and "on valid without --tta" in said[0]
    without = json.loads(threshold_file.read_text())
    assert without["tta"] is False and without["value"] != with_tta["value"]
    assert json.loads((tiny_run / "eval/test/metrics.json").read_text())["threshold"] == without

    # predict refuses a threshold chosen with the other setting, in one line, before predicting
    test_x = tiny_pcam / "camelyonpatch_level_2_split_test_x.h5"
    args = ["--workdir", str(tiny_run), "--input", str(test_x), "--output", str(tmp_path / "p.csv")]
    capsys.readouterr()
    assert predict.main([*args, "--tta"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "chosen without --tta" in err and "refusing" in err and "--tta first" in err
    assert not (tmp_path / "p.csv").exists()

    # with the TTA threshold, predict --tta gives evaluate --tta's probabilities and decisions
    assert evaluate.main(["--workdir", str(tiny_run), "--split", "test", "--tta"]) == 0
    assert json.loads(threshold_file.read_text())["value"] == with_tta["value"]  # the same choice again
    assert predict.main([*args, "--tta"]) == 0
    evaluated, predicted = _csv(tiny_run / "eval/test/predictions.csv"), _csv(tmp_path / "p.csv")
    np.testing.assert_array_equal(predicted["probability"], evaluated["probability"])
    np.testing.assert_array_equal(predicted["predicted"], evaluated["predicted"])


def test_tta_refuses_non_square_images_and_warns_for_models_trained_without_flips(tiny_run, messages):
    import dataclasses

    from jaxpcam.errors import UserError

    run = load_run(tiny_run)
    run.check_tta()
    assert not any("WARNING" in m for m in messages)
    unaugmented = run.config.copy_and_resolve_references()
    unaugmented.data.augment = False
    dataclasses.replace(run, config=unaugmented).check_tta()
    assert any("WARNING: --tta on a model trained without data.augment" in m for m in messages)
    with pytest.raises(UserError, match="--tta needs square images; this model takes 96x64"):
        dataclasses.replace(run, data_profile={"image_shape": [96, 64, 3]}).predict_fn(tta=True)
