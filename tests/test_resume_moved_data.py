"""A run resumes from data that moved (a laptop run continued on a cluster, data staged to
$TMPDIR) when the training files are the ones it trained on, and bit-identically; other files
under the new path are refused, and so is a move config.json cannot vouch for. The run's name is
a label and may change too."""

import shutil

import pytest

from conftest import metrics_without_timing, train_in_process
from jaxpcam.core.errors import UserError
from jaxpcam.data.sample import write_sample


@pytest.fixture(scope="module")
def first_epoch(tiny_pcam, tmp_path_factory):
    """Epoch 1 of a 2-epoch run on tiny_pcam, and the same run uninterrupted."""
    root = tmp_path_factory.mktemp("moved")
    train_in_process(root / "whole", tiny_pcam)
    train_in_process(root / "half", tiny_pcam, **{"training.epochs": 1})
    return root


def _half(first_epoch, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(first_epoch / "half", workdir)
    return workdir


def test_moved_data_with_the_same_files_resumes_bit_identically(first_epoch, tiny_pcam, tmp_path):
    workdir = _half(first_epoch, tmp_path)
    moved = tmp_path / "staged" / "pcam"
    shutil.copytree(tiny_pcam, moved)
    for name in ("camelyonpatch_level_2_split_test_x.h5", "camelyonpatch_level_2_split_test_y.h5"):
        (moved / name).unlink()  # staged without the test split, which training never reads
    lines = train_in_process(workdir, moved, experiment_name="renamed")
    assert f"data.dir {str(tiny_pcam)!r} -> {str(moved)!r}: the same training files" in "\n".join(lines)
    assert any("resuming from checkpoint step" in line for line in lines)
    assert metrics_without_timing(workdir) == metrics_without_timing(first_epoch / "whole")


def test_moved_data_with_other_files_is_refused_before_training(first_epoch, tmp_path):
    workdir = _half(first_epoch, tmp_path)
    other = tmp_path / "other"
    write_sample(other, {"train": 256, "valid": 96, "test": 96}, seed=8)  # tiny_pcam's sizes, other tiles
    before = (workdir / "metrics.jsonl").read_text()
    message = r"holds a run trained on data elsewhere \(data\.dir .*\): other files are there \(camelyonpatch_level"
    with pytest.raises(
        UserError, match=message + r"_2_split_train_x\.h5, camelyonpatch_level_2_split_train_y\.h5 and 2"
    ):
        train_in_process(workdir, other)
    assert (workdir / "metrics.jsonl").read_text() == before


def test_without_config_json_a_run_resumes_where_its_data_was_and_a_move_is_refused(first_epoch, tiny_pcam, tmp_path):
    """config.json vouches for moved files; without it the data may not move, but the run still resumes."""
    workdir = _half(first_epoch, tmp_path)
    (workdir / "config.json").unlink()
    moved = tmp_path / "copy"
    shutil.copytree(tiny_pcam, moved)
    with pytest.raises(UserError, match=r"config\.json, which records the files the run trained on, is missing"):
        train_in_process(workdir, moved)
    lines = train_in_process(workdir, tiny_pcam)
    assert any(line.startswith("WARNING: ") and "the data could not be checked" in line for line in lines)
    assert metrics_without_timing(workdir) == metrics_without_timing(first_epoch / "whole")


def test_which_files_count_a_renamed_digits_file_yes_swapped_pcam_splits_no(tmp_path):
    import json

    from jaxpcam.data.pcam import file_fingerprint
    from jaxpcam.run import data_identity as moved_data
    from jaxpcam.run.data_identity import DataVerdict

    moved = ({"data": {"dir": "a"}}, {"data": {"dir": "b"}})

    def record(workdir, files):
        workdir.mkdir(parents=True)
        entries = [{"name": p.name, "fingerprint": file_fingerprint(p)} for p in files]
        (workdir / "config.json").write_text(json.dumps({"config": {}, "provenance": {"data": {"files": entries}}}))
        return workdir

    digits = tmp_path / "digits.h5"
    digits.write_bytes(b"digits" * 100)
    renamed = tmp_path / "elsewhere" / "renamed.h5"
    renamed.parent.mkdir()
    renamed.write_bytes(digits.read_bytes())
    run = record(tmp_path / "digits_run", [digits])
    assert (
        moved_data.judge(run, {"data": {"digits_file": "a"}}, {"data": {"digits_file": "b"}}, [renamed]).verdict
        is DataVerdict.MOVED
    )
    pcam = tmp_path / "pcam"
    write_sample(pcam, {"train": 16, "valid": 8, "test": 8})
    files = sorted(pcam.glob("*.h5"))
    run = record(tmp_path / "pcam_run", files)
    staged = [p for p in files if "_test_" not in p.name]
    assert moved_data.judge(run, *moved, staged).verdict is DataVerdict.MOVED  # the test split stays behind
    swapped = tmp_path / "swapped"
    shutil.copytree(pcam, swapped)
    for a, b in (("train_x", "valid_x"), ("train_y", "valid_y")):
        first, second = (swapped / f"camelyonpatch_level_2_split_{n}.h5" for n in (a, b))
        first.rename(tmp_path / "tmp.h5"), second.rename(first), (tmp_path / "tmp.h5").rename(second)
    assert moved_data.judge(run, *moved, sorted(swapped.glob("*.h5"))).verdict is DataVerdict.REPLACED


def test_the_same_data_dir_holding_other_files_is_refused_and_the_same_files_resume(
    first_epoch, tiny_pcam, tmp_path, monkeypatch
):
    """A relative data.dir names a folder where the command runs: from another folder (or with the
    files replaced in place) the same name holds other data, which a resume used silently before."""
    from pathlib import Path

    here, there = tmp_path / "here", tmp_path / "there"
    shutil.copytree(tiny_pcam, here / "pcam")
    there.mkdir()
    write_sample(there / "pcam", {"train": 256, "valid": 96, "test": 96}, seed=8)  # tiny_pcam's sizes, other tiles
    workdir = tmp_path / "run"
    monkeypatch.chdir(here)
    train_in_process(workdir, Path("pcam"), **{"training.epochs": 1})
    before = (workdir / "metrics.jsonl").read_text()
    monkeypatch.chdir(there)
    message = (
        r"other files than pcam \(.*there/pcam\) holds now \(camelyonpatch_level_2_split_train_x\.h5, .* and 2 more"
    )
    with pytest.raises(UserError, match=message):
        train_in_process(workdir, Path("pcam"))
    assert (workdir / "metrics.jsonl").read_text() == before
    shutil.rmtree(there / "pcam")
    shutil.copytree(tiny_pcam, there / "pcam")  # the files it trained on, under the same name
    train_in_process(workdir, Path("pcam"))
    assert metrics_without_timing(workdir) == metrics_without_timing(first_epoch / "whole")
