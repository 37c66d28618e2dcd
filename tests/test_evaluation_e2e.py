"""evaluate / predict / report end to end on a tiny trained run."""

import json
import re
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image
from sklearn import metrics as skm

from conftest import train_in_process
from jaxpcam import evaluate, predict, report
from jaxpcam.evaluation.thresholds import choose_threshold

PICTURES = ("roc", "pr", "confusion", "scores", "slice_feature", "false_negatives", "false_positives")


@pytest.fixture(scope="module")
def tiny_run(tiny_pcam, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("evalrun") / "run"
    train_in_process(workdir, tiny_pcam)
    return workdir


def _csv(path):
    return np.genfromtxt(path, delimiter=",", names=True, dtype=None, encoding="utf-8")


def test_evaluate_valid_chooses_the_threshold_and_writes_everything(tiny_run, tmp_path, capsys):
    slice_file = tmp_path / "my_slices.py"
    slice_file.write_text("def reddish(images):\n    return images[..., 0].mean(axis=(1, 2)) > 215\n")
    capsys.readouterr()
    assert evaluate.main(["--workdir", str(tiny_run), "--slice", f"{slice_file}:reddish"]) == 0
    out = tiny_run / "eval" / "valid"
    result = json.loads((out / "metrics.json").read_text())
    assert result["class_names"] == ["no tumour", "tumour"]  # the task's words, as in confusion.png
    fn, tp = result["model"]["confusion_matrix"][1]
    printed = capsys.readouterr().out.splitlines()
    assert next(line.split() for line in printed if line.startswith("  tumour ")) == [
        "tumour", f"{fn:,}", f"({fn / (fn + tp):.1%})", f"{tp:,}", f"({tp / (fn + tp):.1%})"
    ]  # fmt: skip
    preds = _csv(out / "predictions.csv")
    labels, probs = preds["label"], preds["probability"]
    assert len(labels) == 96
    assert result["model"]["roc_auc"] == pytest.approx(skm.roc_auc_score(labels, probs), abs=1e-9)
    assert result["model"]["pr_auc"] == pytest.approx(skm.average_precision_score(labels, probs), abs=1e-6)
    stored = json.loads((tiny_run / "eval" / "threshold.json").read_text())
    assert stored["value"] == result["threshold"]["value"]
    assert stored["value"] == pytest.approx(choose_threshold(labels, probs).value, abs=1e-6)
    assert (preds["predicted"] == (probs >= stored["value"])).all()
    assert result["majority_baseline"]["roc_auc"] == 0.5
    for name in PICTURES:
        assert (out / f"{name}.png").stat().st_size > 1000, name
    slices = {row["slice"]: row for row in result["slices"]}
    assert "reddish" in slices and any(name.startswith("dark") for name in slices)
    with h5py.File(_data_dir(tiny_run) / "camelyonpatch_level_2_split_valid_x.h5", "r") as f:
        expected = int((f["x"][..., 0].mean(axis=(1, 2)) > 215).sum())
    assert slices["reddish"]["count"] == expected


def _data_dir(workdir):
    return Path(json.loads((workdir / "config.json").read_text())["config"]["data"]["dir"])


def test_evaluate_test_applies_the_valid_threshold_unchanged(tiny_run, messages):
    assert evaluate.main(["--workdir", str(tiny_run), "--split", "valid"]) == 0
    stored = json.loads((tiny_run / "eval" / "threshold.json").read_text())
    messages.clear()
    assert evaluate.main(["--workdir", str(tiny_run), "--split", "test", "--checkpoint", "latest"]) == 0
    # the tiny data is the sample's files in another folder: recognised, and said once, as evaluating
    assert [m.split(" the BUILT-IN")[0] for m in messages if "BUILT-IN SYNTHETIC SAMPLE" in m] == ["evaluating on"]
    result = json.loads((tiny_run / "eval" / "test" / "metrics.json").read_text())
    assert result["threshold"]["value"] == stored["value"] and result["threshold"]["chosen_on"] == "valid"
    preds = _csv(tiny_run / "eval" / "test" / "predictions.csv")
    assert (preds["predicted"] == (preds["probability"] >= stored["value"])).all()

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tiny_run / "eval" / "test"), size_guidance={"images": 0, "tensors": 0}).Reload()
    assert "eval_test/roc_auc" in events.Tags()["scalars"]
    assert {"eval_test/false_negatives", "eval_test/pr"} <= set(events.Tags()["images"])
    assert "eval_test/pr_curve" in events.Tags()["tensors"]


def test_evaluate_errors_are_one_line_and_keep_earlier_results(tiny_run, tmp_path, capsys):
    assert evaluate.main(["--workdir", str(tiny_run)]) == 0
    before = (tiny_run / "eval" / "valid" / "metrics.json").read_text()
    bad = tmp_path / "bad.py"
    bad.write_text("def broken(images):\n    return images[:1, 0, 0, 0] > 0\n")
    capsys.readouterr()
    assert evaluate.main(["--workdir", str(tiny_run), "--slice", f"{bad}:broken"]) == 2
    err = capsys.readouterr().err
    assert "returned shape" in err and "Traceback" not in err
    assert (tiny_run / "eval" / "valid" / "metrics.json").read_text() == before
    assert evaluate.main(["--workdir", str(tiny_run), "--checkpoint", "99999"]) == 2
    assert "no checkpoint at step 99999" in capsys.readouterr().err
    assert evaluate.main(["--workdir", str(tmp_path)]) == 2
    assert "no checkpoints/ folder" in capsys.readouterr().err


def test_predict_matches_evaluation_and_reads_h5_npy_and_png(tiny_run, tmp_path, capsys):
    assert evaluate.main(["--workdir", str(tiny_run), "--split", "test"]) == 0
    evaluated = _csv(tiny_run / "eval" / "test" / "predictions.csv")
    test_x = _data_dir(tiny_run) / "camelyonpatch_level_2_split_test_x.h5"
    capsys.readouterr()
    assert predict.main(["--workdir", str(tiny_run), "--input", str(test_x), "--output", str(tmp_path / "h5.csv")]) == 0
    from_h5 = _csv(tmp_path / "h5.csv")
    assert np.array_equal(from_h5["probability"], evaluated["probability"])
    assert np.array_equal(from_h5["predicted"], evaluated["predicted"])

    with h5py.File(test_x, "r") as f:
        images = f["x"][:5]
    folder = tmp_path / "pngs"
    folder.mkdir()
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"patch_{i}.png")
    assert predict.main(["--workdir", str(tiny_run), "--input", str(folder), "--output", str(tmp_path / "p.csv")]) == 0
    from_png = _csv(tmp_path / "p.csv")
    assert list(from_png["name"]) == [f"patch_{i}.png" for i in range(5)]
    assert np.array_equal(from_png["probability"], evaluated["probability"][:5])

    np.save(tmp_path / "wrong.npy", np.zeros((2, 32, 32, 3), np.uint8))
    capsys.readouterr()
    assert predict.main(["--workdir", str(tiny_run), "--input", str(tmp_path / "wrong.npy"), "--output", "x.csv"]) == 2
    assert "the model takes (96, 96, 3)" in capsys.readouterr().err


def test_predict_warns_on_drifted_input_only(tiny_run, tmp_path, capsys):
    train_x = _data_dir(tiny_run) / "camelyonpatch_level_2_split_train_x.h5"
    with h5py.File(train_x, "r") as f:
        images = f["x"][:64]
    np.save(tmp_path / "same.npy", images)
    # Another scanner's exposure, far beyond the spread of the tiny sample's 2 training slides.
    np.save(tmp_path / "dark.npy", (images * 0.3).astype(np.uint8))
    capsys.readouterr()
    assert (
        predict.main(
            ["--workdir", str(tiny_run), "--input", str(tmp_path / "same.npy"), "--output", str(tmp_path / "s")]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert "no input drift" in err and "WARNING" not in err
    assert (
        predict.main(
            ["--workdir", str(tiny_run), "--input", str(tmp_path / "dark.npy"), "--output", str(tmp_path / "d")]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert "WARNING: input drift: " in err and "DRIFT WARNING" not in err
    assert "only 2 training slides: too few to know how much slides differ" in err
    (warning,) = [line for line in err.splitlines() if "input drift" in line]
    assert not re.search(r"\bp = \d|about 1 in|million", warning)  # no false-alarm rate is claimed from 2 slides


def _error_line(capsys) -> str:
    """The command's one error line (after any log lines), with no traceback."""
    err = capsys.readouterr().err.strip().splitlines()
    assert "Traceback" not in "\n".join(err) and [e for e in err if e.startswith("error: ")] == err[-1:], err
    return err[-1]


def test_predict_replaces_an_existing_file_only_with_overwrite_and_writes_whole(
    tiny_run, tmp_path, capsys, messages, monkeypatch
):
    images = tmp_path / "images.npy"
    np.save(images, np.zeros((3, 96, 96, 3), np.uint8))
    output = tmp_path / "preds.csv"
    output.write_text("mine\n")
    args = ["--input", str(images), "--output", str(output)]
    capsys.readouterr()
    # refused before any work (the run is not even looked at), the file as it was
    assert predict.main(["--workdir", str(tmp_path / "no_run"), *args]) == 2
    assert (
        _error_line(capsys) == f"error: --output {output} exists: pass --overwrite to replace it, or name another file"
    )
    assert output.read_text() == "mine\n"

    # a failure half-way through the write leaves the file as it was, and no temporary file
    real_write_text = Path.write_text

    def disk_full(self, text, *a, **k):
        real_write_text(self, text[:10])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", disk_full)
    assert predict.main(["--workdir", str(tiny_run), *args, "--overwrite"]) == 2
    monkeypatch.undo()
    assert "No space left on device" in _error_line(capsys)
    assert output.read_text() == "mine\n" and sorted(p.name for p in tmp_path.iterdir()) == ["images.npy", "preds.csv"]

    messages.clear()
    assert predict.main(["--workdir", str(tiny_run), *args, "--overwrite"]) == 0
    assert f"replacing {output} (--overwrite)" in messages
    assert list(_csv(output)["name"]) == [0, 1, 2]

    # a file that appears while predicting is not replaced either
    from jaxpcam.evaluation import predict as predicting

    def someone_writes(*a, **k):
        (tmp_path / "new.csv").write_text("theirs\n")
        return real_predict_input(*a, **k)

    real_predict_input = predicting.predict_input
    monkeypatch.setattr(predicting, "predict_input", someone_writes)
    capsys.readouterr()
    assert (
        predict.main(["--workdir", str(tiny_run), "--input", str(images), "--output", str(tmp_path / "new.csv")]) == 2
    )
    assert "exists: pass --overwrite" in _error_line(capsys)
    assert (tmp_path / "new.csv").read_text() == "theirs\n" and not list(tmp_path.glob(".*.tmp"))


def test_predict_writes_into_a_pipe_as_it_is_and_through_a_link(tiny_run, tmp_path):
    """/dev/null or a FIFO is written into, and /dev/stdout (a link) into what it points to: a
    rename would put a regular file in their place."""
    import os
    import stat
    import threading

    np.save(tmp_path / "images.npy", np.zeros((2, 96, 96, 3), np.uint8))
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_text()), daemon=True)
    reader.start()
    args = ["--workdir", str(tiny_run), "--input", str(tmp_path / "images.npy"), "--output", str(fifo)]
    assert predict.main(args) == 0
    reader.join(timeout=30)
    assert received and received[0].startswith("name,probability,predicted,uncertainty\n0,")
    assert stat.S_ISFIFO(fifo.stat().st_mode)

    # a link to a file: with --overwrite the file it points to is replaced, the link stays
    (tmp_path / "target.csv").write_text("old\n")
    (tmp_path / "link.csv").symlink_to(tmp_path / "target.csv")
    args[-1] = str(tmp_path / "link.csv")
    assert predict.main(args) == 2
    assert predict.main([*args, "--overwrite"]) == 0
    assert (tmp_path / "link.csv").is_symlink() and (tmp_path / "target.csv").read_text().startswith("name,")


def _fake_run(folder, seed, aucs, losses):
    folder.mkdir(parents=True)
    config = {"seed": seed, "experiment_name": "x", "model": {"name": "mlp", "num_classes": 1},
              "checkpoint": {"best_metric": "val_roc_auc", "best_mode": "max"}}  # fmt: skip
    (folder / "config.json").write_text(json.dumps({"config": config}))
    records = [
        {"epoch": e + 1, "val_roc_auc": a, "val_f2": 0.5, "val_accuracy": 0.6, "val_loss": loss}
        for e, (a, loss) in enumerate(zip(aucs, losses, strict=True))
    ]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def test_report_across_seeds_gives_mean_std_and_champion(tmp_path, capsys):
    _fake_run(tmp_path / "runs" / "seed42", 42, [0.7, 0.80, 0.75], [0.6, 0.5, 0.55])
    _fake_run(tmp_path / "runs" / "seed43", 43, [0.9, 0.85], [0.4, 0.45])
    _fake_run(tmp_path / "runs" / "seed44", 44, [0.85], [0.3])
    assert report.main([str(tmp_path / "runs" / "seed*")]) == 0
    csv = _csv(tmp_path / "runs" / "report.csv")
    by_run = {row["run"]: row for row in csv}
    assert by_run["seed42"]["val_roc_auc"] == 0.80 and by_run["seed42"]["best_epoch"] == 2
    assert by_run["mean"]["val_roc_auc"] == pytest.approx(0.85)
    assert by_run["std"]["val_roc_auc"] == pytest.approx(0.05)
    assert bool(by_run["seed43"]["champion"]) and not bool(by_run["seed42"]["champion"])
    markdown = (tmp_path / "runs" / "report.md").read_text()
    assert "Champion by val_roc_auc (highest): seed43" in markdown and "0.8500 ± 0.0500" in markdown
    assert report.main([str(tmp_path / "runs"), "--champion", "val_loss", "--output", str(tmp_path / "r")]) == 0
    assert "Champion by val_loss (lowest): seed44" in (tmp_path / "r.md").read_text()
    assert report.main([str(tmp_path / "nothing*")]) == 2


def test_report_includes_evaluation_results(tiny_run, tmp_path):
    assert evaluate.main(["--workdir", str(tiny_run), "--split", "test"]) == 0
    copy = tmp_path / "seed43"
    shutil.copytree(tiny_run, copy)
    assert report.main([str(tiny_run), str(copy), "--output", str(tmp_path / "r")]) == 0
    csv = _csv(tmp_path / "r.csv")
    evaluated = json.loads((tiny_run / "eval" / "test" / "metrics.json").read_text())
    assert csv["test_roc_auc"][0] == pytest.approx(evaluated["model"]["roc_auc"])


def test_evaluate_records_the_data_it_read_and_warns_on_other_data(tiny_run, tmp_path, messages):
    own = _data_dir(tiny_run)
    other = tmp_path / "other"
    shutil.copytree(own, other)
    for suffix in ("x", "y"):  # other test data: the valid files under the test names
        shutil.copy(other / f"camelyonpatch_level_2_split_valid_{suffix}.h5",
                    other / f"camelyonpatch_level_2_split_test_{suffix}.h5")  # fmt: skip
    recorded = json.loads((tiny_run / "config.json").read_text())["provenance"]["data"]["files"]
    recorded = {f["name"]: f for f in recorded}
    test_x = "camelyonpatch_level_2_split_test_x.h5"

    assert evaluate.main(["--workdir", str(tiny_run), "--split", "test", "--data_dir", str(other)]) == 0
    (warning,) = [m for m in messages if m.startswith("WARNING: evaluating on")][:1]
    assert str(other.resolve() / test_x) in warning and recorded[test_x]["path"] in warning
    assert recorded[test_x]["fingerprint"] in warning and "other data than the run's" in warning
    data = json.loads((tiny_run / "eval" / "test" / "metrics.json").read_text())["data"]
    assert data["folder"] == str(other.resolve())
    assert {f["name"] for f in data["files"]} == {test_x, test_x.replace("_x.", "_y.")}

    messages.clear()  # the run's own data (also as a copy elsewhere): recorded, no warning
    shutil.copytree(own, tmp_path / "copy")
    assert evaluate.main(["--workdir", str(tiny_run), "--split", "test", "--data_dir", str(tmp_path / "copy")]) == 0
    assert not [m for m in messages if "WARNING: evaluating on" in m]
    data = json.loads((tiny_run / "eval" / "test" / "metrics.json").read_text())["data"]
    assert data["folder"] == str((tmp_path / "copy").resolve())
    assert {f["name"]: f["fingerprint"] for f in data["files"]} == {
        name: recorded[name]["fingerprint"] for name in (test_x, test_x.replace("_x.", "_y."))
    }


def test_a_relative_data_dir_is_read_where_training_read_it(tiny_pcam, tmp_path, monkeypatch, messages, capsys):
    """data.dir 'pcam', trained from one folder, evaluated from another (which has its own 'pcam'
    with other tiles): read where the run read it, as config.json records; with that folder gone,
    one line naming --data_dir."""
    from jaxpcam.data.sample import write_sample

    here = tmp_path / "project"
    shutil.copytree(tiny_pcam, here / "pcam")
    write_sample(tmp_path / "pcam", {"train": 256, "valid": 96, "test": 96}, seed=8)  # same name, other data
    monkeypatch.chdir(here)
    workdir = (here / "runs" / "run").absolute()
    train_in_process(workdir, Path("pcam"), **{"training.epochs": 1})
    monkeypatch.chdir(tmp_path)
    assert evaluate.main(["--workdir", str(workdir)]) == 0
    assert any(f"data.dir 'pcam' is relative: reading {here / 'pcam'}, where the run read it" in m for m in messages)
    assert not [m for m in messages if m.startswith("WARNING")]
    data = json.loads((workdir / "eval" / "valid" / "metrics.json").read_text())["data"]
    assert data["folder"] == str((here / "pcam").resolve())

    (here / "pcam").rename(here / "moved")
    messages.clear()  # that folder gone: 'pcam' from here, checked against the recorded fingerprints
    assert evaluate.main(["--workdir", str(workdir), "--split", "test"]) == 0
    assert [m for m in messages if m.startswith("WARNING: evaluating on") and "other data than the run's" in m]
    monkeypatch.chdir(here)  # no 'pcam' here either
    capsys.readouterr()
    assert evaluate.main(["--workdir", str(workdir), "--split", "test"]) == 2
    line = _error_line(capsys)
    assert f"data.dir: pcam is relative and {here / 'pcam'}, where the run read it, is no folder now" in line
    assert "--data_dir" in line

    (workdir / "config.json").unlink()  # nothing recorded: 'pcam' from here, and the log says unchecked
    monkeypatch.chdir(tmp_path)
    messages.clear()
    assert evaluate.main(["--workdir", str(workdir), "--split", "test"]) == 0
    assert [m for m in messages if m.startswith("WARNING: ") and f"reading data.dir 'pcam' from {tmp_path}" in m]
    monkeypatch.chdir(here)
    assert evaluate.main(["--workdir", str(workdir), "--split", "test"]) == 2
    assert f"data.dir: pcam is relative and it is no folder from {here}: pass --data_dir" in _error_line(capsys)


def test_a_threshold_chosen_on_other_valid_data_warns_wherever_it_is_used(tiny_run, tmp_path, messages):
    """evaluate --data_dir at other valid data chooses a threshold for those files: evaluate on
    test, predict and export say so when they use it (before: silently), until valid is evaluated
    on the run's data again."""
    from jaxpcam import export
    from jaxpcam.data.sample import write_sample

    workdir = tmp_path / "run"
    shutil.copytree(tiny_run, workdir)
    other = tmp_path / "other"
    write_sample(other, {"train": 16, "valid": 96, "test": 16}, seed=8)
    assert evaluate.main(["--workdir", str(workdir), "--data_dir", str(other)]) == 0
    recorded = json.loads((workdir / "eval" / "threshold.json").read_text())["data"]
    assert recorded["folder"] == str(other.resolve())
    warning = "WARNING: the decision threshold in "
    messages.clear()
    assert evaluate.main(["--workdir", str(workdir), "--split", "test"]) == 0
    images = tmp_path / "images.npy"
    np.save(images, np.zeros((2, 96, 96, 3), np.uint8))
    assert predict.main(["--workdir", str(workdir), "--input", str(images), "--output", str(tmp_path / "p.csv")]) == 0
    assert export.main(["--workdir", str(workdir), "--output", str(tmp_path / "export")]) == 0
    found = [m for m in messages if m.startswith(warning)]
    assert len(found) == 3 and all(f"chosen on other valid data than the run's ({other.resolve()})" in m for m in found)
    assert json.loads((tmp_path / "export" / "model.json").read_text())["decision"]["chosen_on_other_data"] is True
    for damaged in (5, {"files": 5}, {"files": [{"name": ["a"], "fingerprint": 1}]}, {"files": [{"name": "x"}]}):
        stored = json.loads((workdir / "eval" / "threshold.json").read_text())
        (workdir / "eval" / "threshold.json").write_text(json.dumps({**stored, "data": damaged}))
        messages.clear()  # a record not as evaluate writes it: taken as the run's own, no traceback
        assert evaluate.main(["--workdir", str(workdir), "--split", "test"]) == 0
        assert not [m for m in messages if m.startswith(warning)]
    assert evaluate.main(["--workdir", str(workdir)]) == 0  # the run's own valid data again
    messages.clear()
    assert evaluate.main(["--workdir", str(workdir), "--split", "test"]) == 0
    assert not [m for m in messages if m.startswith(warning)]
