"""Where evaluation keeps results with and without TTA, and how older run directories are read."""

import json

import pytest

from jaxpcam.core.errors import UserError
from jaxpcam.run import eval_dir


def _write(path, record):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))


def _evaluation(workdir, folder, split, tta, auc):
    _write(workdir / "eval" / folder / "metrics.json", {"split": split, "tta": tta, "model": {"roc_auc": auc}})


def test_each_setting_has_its_own_threshold_and_results_folder(tmp_path):
    assert eval_dir.threshold_path(tmp_path, False) == tmp_path / "eval" / "threshold.json"
    assert eval_dir.threshold_path(tmp_path, True) == tmp_path / "eval" / "threshold_tta.json"
    assert eval_dir.results_dir(tmp_path, "test", False) == tmp_path / "eval" / "test"
    assert eval_dir.results_dir(tmp_path, "test", True) == tmp_path / "eval" / "test_tta"


def test_a_threshold_is_found_only_for_its_own_setting_and_checkpoint(tmp_path):
    _write(eval_dir.threshold_path(tmp_path, False), {"value": 0.3, "rule": "f2", "checkpoint_step": 8, "tta": False})
    _write(eval_dir.threshold_path(tmp_path, True), {"value": 0.4, "rule": "f2", "checkpoint_step": 8, "tta": True})
    assert eval_dir.find_threshold(tmp_path, False, 8)[1]["value"] == 0.3
    assert eval_dir.find_threshold(tmp_path, True, 8)[1]["value"] == 0.4
    assert eval_dir.find_threshold(tmp_path, True, 16) is None  # chosen for another checkpoint

    # before the layout: one threshold.json saying which setting chose it
    eval_dir.threshold_path(tmp_path, True).unlink()
    assert eval_dir.find_threshold(tmp_path, True, 8) is None  # a plain threshold is never the TTA one
    _write(eval_dir.threshold_path(tmp_path, False), {"value": 0.4, "rule": "f2", "checkpoint_step": 8, "tta": True})
    path, record = eval_dir.find_threshold(tmp_path, True, 8)  # counts as the TTA one
    assert path == tmp_path / "eval" / "threshold.json" and record["value"] == 0.4
    assert eval_dir.find_threshold(tmp_path, False, 8) is None  # ... and a TTA one never the plain one
    older = {"value": 0.3, "rule": "f2", "checkpoint_step": 8}  # older still: no tta key
    _write(eval_dir.threshold_path(tmp_path, False), older)
    assert eval_dir.find_threshold(tmp_path, False, 8)[1]["value"] == 0.3


def test_evaluations_are_read_by_what_they_say_and_the_newer_tta_one_wins(tmp_path):
    _evaluation(tmp_path, "test", "test", False, 0.80)
    _evaluation(tmp_path, "test_tta", "test", True, 0.82)
    _evaluation(tmp_path, "valid", "valid", True, 0.70)  # a TTA evaluation from before the layout
    _evaluation(tmp_path, ".test.partial", "test", False, 0.1)  # one being written: not read
    found = {key: record["model"]["roc_auc"] for key, record in eval_dir.read_evaluations(tmp_path).items()}
    assert found == {("test", False): 0.80, ("test", True): 0.82, ("valid", True): 0.70}
    _evaluation(tmp_path, "valid_tta", "valid", True, 0.75)  # a newer one in its own place wins
    assert eval_dir.read_evaluations(tmp_path)["valid", True]["model"]["roc_auc"] == 0.75


def test_older_tta_files_move_to_their_own_place_unless_it_is_taken(tmp_path, messages):
    _write(eval_dir.threshold_path(tmp_path, False), {"value": 0.4, "rule": "f2", "checkpoint_step": 8, "tta": True})
    _evaluation(tmp_path, "test", "test", True, 0.82)
    _evaluation(tmp_path, "valid", "valid", True, 0.70)
    _evaluation(tmp_path, "valid_tta", "valid", True, 0.75)  # taken: the older valid/ stays
    _evaluation(tmp_path, "train", "train", False, 0.9)  # without TTA: stays
    eval_dir.adopt_older_tta_files(tmp_path)
    names = sorted(p.name for p in (tmp_path / "eval").iterdir())
    assert names == ["test_tta", "threshold_tta.json", "train", "valid", "valid_tta"]
    assert sorted(m.split(" to ")[1].split(":")[0] for m in messages if m.startswith("moved ")) == [
        str(tmp_path / "eval" / "test_tta"), str(tmp_path / "eval" / "threshold_tta.json")
    ]  # fmt: skip
    eval_dir.adopt_older_tta_files(tmp_path)  # nothing more to move
    assert sorted(p.name for p in (tmp_path / "eval").iterdir()) == names


def test_a_damaged_record_is_one_line_naming_the_file(tmp_path):
    path = eval_dir.threshold_path(tmp_path, False)
    path.parent.mkdir()
    path.write_text('{"value": 0.')
    with pytest.raises(UserError, match=f"{path} is damaged"):
        eval_dir.find_threshold(tmp_path, False, 8)


def test_start_fresh_archives_the_results_of_both_settings(tmp_path):
    from jaxpcam.training.resume import archive_run

    _write(eval_dir.threshold_path(tmp_path, False), {"value": 0.3})
    _write(eval_dir.threshold_path(tmp_path, True), {"value": 0.4})
    _evaluation(tmp_path, "test", "test", False, 0.80)
    _evaluation(tmp_path, "test_tta", "test", True, 0.82)
    archive_run(tmp_path)
    assert not (tmp_path / "eval").exists()
    (archived,) = (tmp_path / "archive").glob("*/eval")
    assert sorted(p.name for p in archived.iterdir()) == ["test", "test_tta", "threshold.json", "threshold_tta.json"]


def test_a_damaged_older_file_is_left_where_it_is(tmp_path):
    eval_dir.threshold_path(tmp_path, False).parent.mkdir()
    eval_dir.threshold_path(tmp_path, False).write_text("[")
    eval_dir.adopt_older_tta_files(tmp_path)
    assert [p.name for p in (tmp_path / "eval").iterdir()] == ["threshold.json"]


@pytest.mark.parametrize(
    "record, reason",
    [
        ({"checkpoint_step": 8}, "its value is null"),
        ({"value": "0.3", "rule": "f2", "checkpoint_step": 8}, 'its value is "0.3"'),
        ({"value": float("nan"), "rule": "f2", "checkpoint_step": 8}, "its value is NaN"),
        ({"value": 2.5, "rule": "f2", "checkpoint_step": 8}, "its value is 2.5, not a number in 0..1"),
        ({"value": 0.3, "checkpoint_step": 8}, "its rule is null"),
        ({"value": 0.3, "rule": "f3", "checkpoint_step": 8}, 'its rule is "f3"'),
        ({"value": 0.3, "rule": "recall", "target_recall": 0, "checkpoint_step": 8}, "its target_recall is 0"),
        ({"value": 0.3, "rule": "f2", "checkpoint_step": "8"}, 'its checkpoint_step is "8"'),
        ({"value": 0.3, "rule": "f2", "checkpoint_step": 8, "tta": "no"}, "its tta is not true or false"),
    ],
)
def test_a_threshold_record_that_is_json_but_not_a_threshold_is_damaged(tmp_path, record, reason):
    _write(eval_dir.threshold_path(tmp_path, False), record)
    with pytest.raises(eval_dir.DamagedRecord, match=r"is damaged \(not the record jaxpcam.evaluate writes: ") as err:
        eval_dir.find_threshold(tmp_path, False, 8)
    assert reason in str(err.value) and "run python -m jaxpcam.evaluate again" in str(err.value)


def test_a_metrics_record_that_is_json_but_not_metrics_is_damaged(tmp_path):
    _write(eval_dir.results_dir(tmp_path, "test", False) / "metrics.json", {"model": "x", "tta": True})
    with pytest.raises(eval_dir.DamagedRecord, match="it has no model results"):
        eval_dir.read_evaluations(tmp_path)
    _write(eval_dir.results_dir(tmp_path, "test", False) / "metrics.json", {"model": {"roc_auc": "0.9"}})
    with pytest.raises(eval_dir.DamagedRecord, match="hold values that are no numbers"):
        eval_dir.read_evaluations(tmp_path)
