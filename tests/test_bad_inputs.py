"""Bad inputs end in one clear line (exit code 2), never a traceback, and never harm earlier results.

Unit-level where possible; three subprocess runs in all (the trained run, and two checks that
the real entry point prints exactly one line).
"""

import hashlib
import json
import pickle
import re
import shutil
import warnings
from pathlib import Path

import h5py
import ml_collections
import numpy as np
import pytest
from ml_collections import config_flags

from conftest import TINY_MODELS, run_main, tiny_overrides, train_in_process
from jaxpcam import cli, evaluate, main, predict
from jaxpcam.config import base_config
from jaxpcam.config.checks import leaves as config_leaves
from jaxpcam.config.checks import validate
from jaxpcam.core.errors import UserError
from jaxpcam.core.files import write_text_atomic
from jaxpcam.core.task import task_for
from jaxpcam.data import check_split, open_training_data, stats
from jaxpcam.data.audit import audit
from jaxpcam.data.pcam import count_nonfinite, file_fingerprint, open_split, split_paths
from jaxpcam.sweeps.grid import load_sweep


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("jaxpcam-audit"))
    return dst


def _empty(folder: Path, split: str) -> None:
    x_path, y_path = split_paths(folder, split)
    with h5py.File(x_path, "w") as f:
        f.create_dataset("x", (0, 96, 96, 3), np.uint8)
    with h5py.File(y_path, "w") as f:
        f.create_dataset("y", (0, 1, 1, 1), np.uint8)


def _as_float(folder: Path, split: str, poison=()) -> Path:
    """Rewrites ``split``'s x as float32 (a course copy), with NaN/inf at the ``poison`` positions."""
    x_path, _ = split_paths(folder, split)
    with h5py.File(x_path) as f:
        x = f["x"][...].astype(np.float32)
    for where, value in poison:
        x[where] = value
    with h5py.File(x_path, "w") as f:
        f["x"] = x
    return x_path


def _data_config(data_dir: Path):
    config = base_config()
    config.data.dir = str(data_dir)
    return config.data


def _tree_digest(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.blake2b(p.read_bytes()).hexdigest() for p in folder.rglob("*")
            if p.is_file()}  # fmt: skip


@pytest.fixture(scope="module")
def trained_run(tiny_pcam, tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("badinputs") / "run"
    overrides = tiny_overrides(tiny_pcam, **{"training.epochs": 1})
    result = run_main(["--config", "configs/mlp.py", f"--workdir={workdir}", *overrides])
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir


# 1. Empty splits: refused when the data is opened, before any training or evaluation.


@pytest.mark.parametrize("split", ["train", "valid"])
def test_an_empty_split_is_refused_when_the_training_data_is_opened(tiny_pcam, tmp_path, split):
    data = _copy(tiny_pcam, tmp_path / "data")
    _empty(data, split)
    x_name = f"camelyonpatch_level_2_split_{split}_x.h5"
    with pytest.raises(UserError, match=rf"^the {split} split is empty: .*{re.escape(x_name)} holds 0 images$"):
        open_training_data(_data_config(data), 0)


def test_a_filter_manifest_keeping_no_image_is_refused(tiny_pcam, tmp_path):
    data = _copy(tiny_pcam, tmp_path / "data")
    (data / "jaxpcam-audit").mkdir()
    manifest = {"x_fingerprint": file_fingerprint(split_paths(data, "train")[0]), "kept": [], "dropped": 256}
    (data / "jaxpcam-audit" / "manifest_train.json").write_text(json.dumps(manifest))
    config = _data_config(data)
    config.filter = True
    with pytest.raises(UserError, match=r"data\.filter: .*manifest_train\.json keeps none of the 256 train images"):
        open_training_data(config, 0)


def test_training_on_an_empty_valid_split_is_one_line_and_leaves_the_run_alone(tiny_pcam, tmp_path):
    data = _copy(tiny_pcam, tmp_path / "data")
    workdir = tmp_path / "run"
    train_in_process(workdir, data, **{"training.epochs": 1})  # on this data.dir: another would be refused first
    _empty(data, "valid")
    before = _tree_digest(workdir)
    overrides = tiny_overrides(data, **{"training.epochs": 2})  # would resume and train on
    result = run_main(["--config", "configs/mlp.py", f"--workdir={workdir}", *overrides])
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: the valid split is empty: {data / 'camelyonpatch_level_2_split_valid_x.h5'} holds 0 images"
    ]
    assert _tree_digest(workdir) == before


def test_evaluating_an_empty_split_is_one_line(trained_run, tiny_pcam, tmp_path, capsys):
    data = _copy(tiny_pcam, tmp_path / "data")
    _empty(data, "test")
    assert evaluate.main(["--workdir", str(trained_run), "--split", "test", "--data_dir", str(data)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.splitlines()[-1] == (
        f"error: the test split is empty: {data / 'camelyonpatch_level_2_split_test_x.h5'} holds 0 images"
    )
    assert not (trained_run / "eval" / "test").exists()


# 2. NaN/inf pixels in a float x: a data error, found by one chunked scan that is cached.


def test_non_finite_pixels_are_counted_in_bounded_blocks(tiny_pcam, tmp_path):
    data = _copy(tiny_pcam, tmp_path / "data")
    x_path = _as_float(data, "train", [((3, 0, 0, 0), np.nan), ((5, 1, 1, 1), np.inf), ((250, 9, 9), -np.inf)])
    assert [count_nonfinite(x_path, block) for block in (1, 7, 256, 1000)] == [5, 5, 5, 5]  # 250: all 3 channels
    assert count_nonfinite(split_paths(tiny_pcam, "train")[0]) == 0  # uint8: never read


def test_non_finite_pixels_are_refused_once_scanned_and_then_from_the_cache(tiny_pcam, tmp_path, monkeypatch, messages):
    data = _copy(tiny_pcam, tmp_path / "data")
    x_path = _as_float(data, "train", [((3, 0, 0, 0), np.nan), ((5, 1, 1, 1), np.inf), ((7, 2, 2, 2), -np.inf)])
    _as_float(data, "valid")  # float, but finite: fine
    expected = rf"^{re.escape(str(x_path))} holds 3 non-finite pixel values \(NaN or inf\) in 'x'"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the old path: a RuntimeWarning, and NaN trained as 0
        with pytest.raises(UserError, match=expected):
            open_training_data(_data_config(data), 0)
    assert any(m.startswith("scanning camelyonpatch_level_2_split_train_x.h5") for m in messages)
    assert len(list((data / "jaxpcam-audit").glob("nonfinite-*.json"))) == 1  # the train file's; valid's is next

    def no_scan(path, block=256):
        raise AssertionError(f"{path} scanned again")

    monkeypatch.setattr(stats, "count_nonfinite", no_scan)
    with pytest.raises(UserError, match=expected):  # the cached count, no second read of the file
        open_training_data(_data_config(data), 0)
    with pytest.raises(UserError, match=expected):  # evaluation opens splits the same way
        check_split(open_split(data, "train"))
    open_training_data(_data_config(tiny_pcam), 0)  # uint8 files are never scanned
    monkeypatch.undo()

    shutil.copy(split_paths(tiny_pcam, "train")[0], x_path)
    _as_float(data, "train")  # the file fixed in place: scanned again, and accepted
    assert len(open_training_data(_data_config(data), 0).train) == 256


def test_the_audit_reports_non_finite_pixels_per_file(tiny_pcam, tmp_path):
    data = _copy(tiny_pcam, tmp_path / "data")
    _as_float(data, "train", [((3, 0, 0, 0), np.nan), ((3, 1, 1, 1), np.nan), ((9, 2, 2, 2), np.inf)])
    _as_float(data, "valid")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = audit(data, tmp_path / "audit")
    counts = {f["file"]: f.get("nonfinite_pixels") for f in report["files"]}
    assert counts["camelyonpatch_level_2_split_train_x.h5"] == 3
    assert counts["camelyonpatch_level_2_split_valid_x.h5"] == 0
    assert counts["camelyonpatch_level_2_split_test_x.h5"] == 0  # uint8
    assert report["splits"]["train"]["nonfinite_pixels"] == 3
    assert report["splits"]["train"]["out_of_range"] == [3, 9]  # dropped from the clean manifest


# 3 and 5. Config values of the wrong type, and non-finite floats.


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("model.hidden_units", (1.5,)),
        ("model.hidden_units", ("abc",)),  # what --config.model.hidden_units=abc parses to
        ("model.hidden_units", (True, 16)),
        ("model.hidden_units", ()),
        ("model.conv_features", (32, 64.0)),
        ("model.conv_features", ((32, 64),)),
        ("model.resnet_blocks", (2, "2")),
        ("data.digits", (4, 5.5)),
        ("data.digits", (4, 12)),
        ("data.digits", ("4", "5")),
    ],
)
def test_tuple_keys_must_hold_integers(key, value):
    config = base_config()
    if key in ("model.conv_features", "model.resnet_blocks"):  # keys of the ResNet (and the CNN)
        config.model = ml_collections.ConfigDict(TINY_MODELS["resnet"])
    section, name = key.split(".")
    config[section][name] = value
    with pytest.raises(UserError, match=rf"^config key {re.escape(key)}: expected .*integers"):
        validate(config)


@pytest.mark.parametrize("key", sorted(key for key, value in config_leaves(base_config()) if isinstance(value, float)))
@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_every_float_key_must_be_finite(key, value):
    config = base_config()
    section, name = key.split(".")
    config[section][name] = value
    with pytest.raises(UserError, match=rf"^config key {re.escape(key)}: expected a finite number"):
        validate(config)


@pytest.mark.parametrize("value", [0.0, -1e-3])
def test_the_learning_rate_must_be_positive(value):
    config = base_config()
    config.training.learning_rate = value
    with pytest.raises(UserError, match=r"training\.learning_rate: expected a value > 0"):
        validate(config)


# 4. checkpoint.best_metric: one of the names training actually logs for the task.


def test_the_metrics_of_a_real_run_are_the_metric_names(trained_run):
    record = json.loads((trained_run / "metrics.jsonl").read_text().splitlines()[0])
    assert tuple(k for k in record if k.startswith("val_")) == task_for(base_config()).metric_names


@pytest.mark.parametrize(("dataset", "num_classes"), [("pcam", 1), ("pcam", 2), ("digits", 6)])
def test_best_metric_accepts_exactly_the_logged_names(dataset, num_classes):
    config = base_config()
    config.data.dataset, config.model.num_classes = dataset, num_classes
    names = task_for(config).metric_names
    for name in names:
        config.checkpoint.best_metric = name
        validate(config)
    config.checkpoint.best_metric = "val_bogus"
    allowed = ", ".join(names)
    with pytest.raises(UserError, match=rf"checkpoint\.best_metric: expected .*{re.escape(allowed)}, got 'val_bogus'"):
        validate(config)


# 6. A --config file that does not load, and flags that do not parse: one line from cli.parse.


def _parse(*args):
    """cli.parse for a command with a --config file flag, as jaxpcam.main and jaxpcam.sweep have."""
    flag_values = cli.command_flags()
    config_flags.DEFINE_config_file("config", None, "config file", flag_values=flag_values, lock_config=True)
    cli.parse(list(args), flag_values, main.__doc__, required=("config",))
    return flag_values


CONFIG_HEAD = "from jaxpcam.config import base_config\n\n\n"
BROKEN_CONFIGS = {  # the file's text, and what the error says after its path
    "syntax": (
        CONFIG_HEAD + "def get_config():\n    config = base_config()\n    x = (\n",
        r", line 6: SyntaxError: '\(' was never closed",
    ),
    "raises": (
        CONFIG_HEAD + "def get_config():\n    raise RuntimeError('no\\nway')\n",
        r", line 5: RuntimeError: no way",
    ),
    "import": (
        "import nonexistent_module_xyz\n" + CONFIG_HEAD,
        r", line 1: ModuleNotFoundError: No module named 'nonexistent_module_xyz'",
    ),
    "no get_config": (CONFIG_HEAD, r": it defines no get_config\(\)"),
    "returns None": (
        CONFIG_HEAD + "def get_config():\n    pass\n",
        r": get_config\(\) returned NoneType, not a ConfigDict",
    ),
}


@pytest.mark.parametrize("overrides", [(), ("--config.seed=3",)])
@pytest.mark.parametrize("case", [*BROKEN_CONFIGS, "missing"])
def test_a_config_file_that_does_not_load_is_one_line(tmp_path, monkeypatch, capsys, case, overrides):
    path = tmp_path / "broken.py"
    if case != "missing":
        path.write_text(BROKEN_CONFIGS[case][0])
    expected = ": no such file" if case == "missing" else BROKEN_CONFIGS[case][1]
    with pytest.raises(SystemExit) as stopped:
        _parse(f"--config={path}", *overrides)
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert re.match(rf"error: cannot load the --config file {re.escape(str(path))}{expected}", err), err


def test_the_sweep_file_gets_the_same_one_line_errors(tmp_path):
    path = tmp_path / "sweep.py"
    path.write_text(
        CONFIG_HEAD + "def get_config():\n    return base_config()\n\n\ndef get_sweep():\n    return 1 / 0\n"
    )
    with pytest.raises(UserError, match=r"sweep\.py, line 9: ZeroDivisionError: division by zero$"):
        load_sweep(path)


def test_main_prints_exactly_one_line_for_a_broken_config_file(tmp_path):
    path = tmp_path / "x.py"
    path.write_text(BROKEN_CONFIGS["syntax"][0])
    result = run_main(["--config", str(path), f"--workdir={tmp_path / 'run'}", "--config.seed=3"])
    assert result.returncode == 2
    assert result.stderr == f"error: cannot load the --config file {path}, line 6: SyntaxError: '(' was never closed\n"
    assert not (tmp_path / "run").exists()


def test_bad_override_values_reach_validation_or_are_one_line(monkeypatch, capsys):
    parsed = _parse("--config=configs/mlp.py", "--config.model.hidden_units=abc")
    assert parsed.config.model.hidden_units == ("abc",)  # ml_collections' reading: validate refuses it
    with pytest.raises(UserError, match=r"model\.hidden_units: expected a non-empty tuple of positive integers"):
        validate(parsed.config)
    with pytest.raises(SystemExit) as stopped:
        _parse("--config=configs/mlp.py", "--config.model.hidden_units.x=1")
    assert stopped.value.code == 2
    assert capsys.readouterr().err == (
        "error: unknown config key model.hidden_units.x: model.hidden_units is a value, not a section\n"
    )


# 7. predict: an input without images, --output a folder, and atomic writes that leave nothing behind.


@pytest.mark.parametrize("kind", ["npy", "h5"])
def test_predict_refuses_an_input_without_images(trained_run, tmp_path, capsys, kind):
    source = tmp_path / f"empty.{kind}"
    if kind == "npy":
        np.save(source, np.zeros((0, 96, 96, 3), np.uint8))
    else:
        with h5py.File(source, "w") as f:
            f.create_dataset("x", (0, 96, 96, 3), np.uint8)
    output = tmp_path / "preds.csv"
    assert predict.main(["--workdir", str(trained_run), "--input", str(source), "--output", str(output)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.splitlines()[-1] == f"error: {source} holds 0 images: nothing to predict"
    assert not output.exists()


def test_a_npy_of_python_objects_is_refused_without_suggesting_to_unpickle_it(trained_run, tmp_path, capsys):
    objects, pickled = tmp_path / "objects.npy", tmp_path / "pickled.npy"
    np.save(objects, np.array([{"not": "images"}], dtype=object), allow_pickle=True)
    pickled.write_bytes(pickle.dumps({"not": "an array"}))  # numpy's own message suggests allow_pickle=True
    for source in (objects, pickled):
        output = tmp_path / "preds.csv"
        assert predict.main(["--workdir", str(trained_run), "--input", str(source), "--output", str(output)]) == 2
        last = capsys.readouterr().err.splitlines()[-1]
        assert last.endswith(f"{source} as a .npy array of images: it holds Python objects, not an array of numbers")


def test_predict_refuses_non_finite_pixels_naming_the_image(trained_run, tmp_path, capsys):
    images = np.full((5, 96, 96, 3), 120.0, np.float32)
    images[3, 10, 10, 1] = np.nan
    source = tmp_path / "nan.npy"
    np.save(source, images)
    output = tmp_path / "preds.csv"
    assert predict.main(["--workdir", str(trained_run), "--input", str(source), "--output", str(output)]) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == f"error: {source}: image 3 holds non-finite pixel values (NaN or inf)"
    assert not output.exists()


@pytest.mark.parametrize(
    ("values", "dtype", "suffix", "message"),
    [
        ((-300.0, -45.0), np.float32, ".npy", "image 0 holds pixel values -300..-45; the model takes 0..255"),
        ((0.0, 1020.0), np.float32, ".h5", "image 0 holds pixel values 0..1020; the model takes 0..255"),
        ((0, 65280), np.uint16, ".npy", "image 0 holds pixel values 0..65280; the model takes 0..255"),
        (
            (0.0, 1.0),
            np.float32,
            ".h5",
            "images 0..3 hold floats within 0..1; the model takes 0..255 (multiply by 255)",
        ),
    ],
)
def test_predict_refuses_pixels_outside_0_255_in_every_format(trained_run, tmp_path, capsys, values, dtype, suffix,
                                                              message):  # fmt: skip
    one = np.linspace(*values, 96 * 96 * 3).astype(dtype).reshape(96, 96, 3)
    images = np.stack([one] * 4)  # every image spans the whole range
    source = tmp_path / f"x{suffix}"
    if suffix == ".npy":
        np.save(source, images)
    else:
        with h5py.File(source, "w") as f:
            f["x"] = images
    output = tmp_path / "preds.csv"
    assert predict.main(["--workdir", str(trained_run), "--input", str(source), "--output", str(output)]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"error: {source}: {message}"
    assert not output.exists()


def test_predict_refuses_an_output_folder_before_any_work(tmp_path, capsys, monkeypatch):
    import jaxpcam.evaluation.predict

    monkeypatch.setattr(jaxpcam.evaluation.predict, "load_run", lambda *args, **kwargs: pytest.fail("loaded first"))
    np.save(tmp_path / "two.npy", np.zeros((2, 96, 96, 3), np.uint8))
    (tmp_path / "out").mkdir()
    before = sorted(p.name for p in tmp_path.iterdir())
    args = ["--workdir", str(tmp_path / "run"), "--input", str(tmp_path / "two.npy"), "--output", str(tmp_path / "out")]
    assert predict.main(args) == 2
    assert (
        capsys.readouterr().err
        == f"error: --output {tmp_path / 'out'} is a folder: give the path of the CSV file to write\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_failed_atomic_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    (tmp_path / "folder").mkdir()
    with pytest.raises(IsADirectoryError):  # the replace fails
        write_text_atomic(tmp_path / "folder", "text")
    assert [p.name for p in tmp_path.iterdir()] == ["folder"]

    def disk_full(self, text, *args, **kwargs):
        with open(self, "w") as f:
            f.write(text[:2])
        raise OSError(28, "No space left on device")

    (tmp_path / "kept.txt").write_text("earlier")
    monkeypatch.setattr(Path, "write_text", disk_full)
    with pytest.raises(OSError, match="No space left"):  # the write fails half-way
        write_text_atomic(tmp_path / "kept.txt", "later")
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "kept.txt"]
    assert (tmp_path / "kept.txt").read_text() == "earlier"


# 8. A training split with one class: a warning, since ROC-AUC and balanced sampling mean nothing.


def test_a_single_class_training_split_is_warned_about(tiny_pcam, tmp_path, messages):
    data = _copy(tiny_pcam, tmp_path / "data")
    _, y_path = split_paths(data, "train")
    with h5py.File(y_path, "w") as f:
        f["y"] = np.zeros((256, 1, 1, 1), np.uint8)
    open_training_data(_data_config(data), 0)
    assert any(
        m.startswith("WARNING: the training split holds only label 0 (256 images): ROC-AUC and balanced sampling "
                     "are meaningless with one class in the training split") for m in messages
    )  # fmt: skip
    messages.clear()
    open_training_data(_data_config(tiny_pcam), 0)
    assert not any("WARNING" in m for m in messages)


def test_a_config_file_with_an_unknown_key_or_a_missing_value_is_refused(tmp_path):
    from jaxpcam.config.files import load_config_file

    typo = tmp_path / "typo.py"
    typo.write_text(
        "from jaxpcam.config import base_config\n\ndef get_config():\n"
        "    c = base_config()\n    c.training.learning_rte = 0.5\n    return c\n"
    )
    with pytest.raises(UserError, match=r"^unknown config key training\.learning_rte: training has .*learning_rate"):
        validate(load_config_file(str(typo)))
    config = base_config()
    config.training.learning_rate = None
    with pytest.raises(UserError, match=r"training\.learning_rate: expected a number, got None"):
        validate(config)
    config = base_config()
    config.training.epochs = 10**20
    with pytest.raises(UserError, match=r"training\.epochs: expected an integer in \[1, 1000000\]"):
        validate(config)
    for key, value in (("data.eval_batch_size", 10**20), ("model.hidden_units", (10**20,))):
        config = base_config()
        config.update_from_flattened_dict({key: value})
        with pytest.raises(UserError, match=rf"{key}: expected"):
            validate(config)
    exits = tmp_path / "exits.py"
    exits.write_text("import sys\nsys.exit(3)\n")
    with pytest.raises(UserError, match=r"exits\.py, line 2: SystemExit: 3"):
        load_config_file(str(exits))


def test_stray_arguments_and_an_empty_workdir_are_one_line(tmp_path):
    stray = run_main(["--config", "configs/mlp.py", "extra"])
    assert stray.returncode == 2 and stray.stderr.strip().splitlines() == [
        "error: unexpected arguments: extra (options are written --name=value)"
    ]
    empty = run_main(["--config", "configs/mlp.py", "--workdir="])
    assert empty.returncode == 2 and "error: --workdir is empty" in empty.stderr
    assert "Traceback" not in empty.stderr + stray.stderr


def test_predict_refuses_a_bad_batch_size_and_an_output_below_a_file(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        predict.main(["--workdir", "w", "--input", "i", "--output", "o.csv", "--batch_size", "-3"])
    assert exit_info.value.code == 2 and "expected an integer in [1, 1048576], got '-3'" in capsys.readouterr().err
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    args = ["--workdir", str(tmp_path / "nowhere"), "--input", "i", "--output", str(a_file / "x.csv")]
    assert predict.main(args) == 2
    assert capsys.readouterr().err.strip() == f"error: --output {a_file / 'x.csv'}: {a_file} is a file, not a folder"


def test_a_model_with_non_finite_outputs_is_one_line_not_a_decision():
    from types import SimpleNamespace

    from jaxpcam.evaluation.loading import check_finite

    run = SimpleNamespace(step=7, workdir=Path("run"))
    assert check_finite(run, np.array([0.1, 0.9])).tolist() == [0.1, 0.9]
    with pytest.raises(UserError, match=r"checkpoint 7 in run gives non-finite probabilities for 1 of 2 images"):
        check_finite(run, np.array([0.1, np.nan]))


@pytest.mark.parametrize("kind", ["npy", "h5", "symlink", "hardlink", "folder"])
def test_predict_never_writes_over_its_input_even_with_overwrite(tmp_path, capsys, monkeypatch, kind):
    import os

    import jaxpcam.evaluation.predict

    monkeypatch.setattr(jaxpcam.evaluation.predict, "load_run", lambda *args, **kwargs: pytest.fail("loaded first"))
    images = np.zeros((2, 96, 96, 3), np.uint8)
    if kind == "folder":
        source = tmp_path / "imgs"
        source.mkdir()
        (source / "t0.png").write_bytes(b"png")
        output = source / "t0.png"
    elif kind == "h5":
        source = output = tmp_path / "in.h5"
        with h5py.File(source, "w") as f:
            f["x"] = images
    else:
        source = output = tmp_path / "in.npy"
        np.save(source, images)
        if kind == "symlink":
            output = tmp_path / "link.csv"
            output.symlink_to(source)
        elif kind == "hardlink":
            output = tmp_path / "hard.csv"
            os.link(source, output)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    args = ["--workdir", str(tmp_path / "run"), "--input", str(source), "--output", str(output), "--overwrite"]
    assert predict.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"error: --output {output} ")
    assert ("inside the --input folder" if kind == "folder" else "is the --input file") in err
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    if kind == "folder":  # a new file in the folder as well
        args[5] = str(source / "sub" / "preds.csv")
        assert predict.main(args) == 2 and "inside the --input folder" in capsys.readouterr().err


def test_predict_refuses_an_output_with_a_trailing_slash_and_an_unwritable_folder_before_any_work(
    tmp_path, capsys, monkeypatch
):
    import os

    import jaxpcam.evaluation.predict

    monkeypatch.setattr(jaxpcam.evaluation.predict, "load_run", lambda *args, **kwargs: pytest.fail("loaded first"))
    np.save(tmp_path / "two.npy", np.zeros((2, 96, 96, 3), np.uint8))
    args = ["--workdir", str(tmp_path / "run"), "--input", str(tmp_path / "two.npy"), "--output"]
    assert predict.main([*args, f"{tmp_path / 'newdir'}/"]) == 2
    assert capsys.readouterr().err == (
        f"error: --output {tmp_path / 'newdir'}/ ends in a slash (a folder): give the path of the CSV file to write\n"
    )
    assert not (tmp_path / "newdir").exists()
    read_only = tmp_path / "ro"
    read_only.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != read_only and real_access(path, mode))
    assert predict.main([*args, str(read_only / "p.csv")]) == 2
    assert capsys.readouterr().err == (
        f"error: --output {read_only / 'p.csv'}: cannot write into the folder {read_only} (permission denied)\n"
    )
    assert predict.main([*args, str(read_only / "new" / "p.csv")]) == 2  # the folder it would be made in
    assert "cannot write into the folder" in capsys.readouterr().err
    assert not (read_only / "new").exists()


def test_a_write_error_after_predicting_names_the_output_not_the_temporary_file(trained_run, tmp_path, capsys):
    import os

    from jaxpcam.core import files

    def fail(path, text, replace):
        raise PermissionError(1, "Operation not permitted", str(path.with_name(f".{path.name}.{os.getpid()}.1.tmp")))

    output = tmp_path / "p.csv"
    source = tmp_path / "two.npy"
    np.save(source, np.zeros((2, 96, 96, 3), np.uint8))
    args = ["--workdir", str(trained_run), "--input", str(source), "--output", str(output)]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(files, "write_output_text", fail)
        patch.setattr("jaxpcam.evaluation.predict.write_output_text", fail)
        assert predict.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == f"error: cannot write --output {output}: Operation not permitted; nothing written there"
    assert not output.exists()
