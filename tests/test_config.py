import importlib.util
import json
from pathlib import Path

import pytest

from conftest import REPO, run_main, tiny_overrides
from jaxpcam.config import base_config
from jaxpcam.config.checks import validate
from jaxpcam.core.errors import UserError


def _load(name):
    spec = importlib.util.spec_from_file_location(name, REPO / "configs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def test_shipped_configs_are_valid_and_have_the_contract_keys():
    mlp, cnn, resnet = _load("mlp"), _load("cnn"), _load("resnet")
    for config in (mlp, cnn, resnet):
        validate(config)
    assert mlp.model.hidden_units == (512, 256) and mlp.model.dropout_rate == 0.2
    assert mlp.training.optimizer == "adam" and mlp.training.learning_rate == 1e-3
    assert mlp.data.batch_size == 128 and mlp.training.epochs == 5 and mlp.data.dir == ""
    assert cnn.model.name == "cnn"
    for key in ("num_workers", "balanced_sampling", "normalization", "augment", "eval_batch_size"):
        assert key in mlp.data
    for key in ("plateau_factor", "plateau_patience", "plateau_threshold", "plateau_cooldown", "min_lr", "dtype"):
        assert key in mlp.training


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("training.optimizer", "adm", "training.optimizer: expected one of"),
        ("data.batch_size", 0, "data.batch_size: expected an integer in .1, 1048576."),
        ("model.name", "vit", "model.name: expected one of"),
        ("training.scheduler", "cosine_annealing", "training.scheduler"),
        ("training.warmup_steps", -1, r"training.warmup_steps: expected an integer >= 0 \(0 = none\), got -1"),
        ("training.early_stopping_patience", -2, "training.early_stopping_patience: expected an integer >= 0"),
        ("model.dropout_rate", 1.0, "model.dropout_rate"),
        ("training.dtype", "float64", "training.dtype"),
        ("data.stain_augment", 1.5, r"data\.stain_augment: expected a strength in \[0, 1\] \(0 = off\), got 1\.5"),
        ("data.stain_augment", -0.1, r"data\.stain_augment: expected a strength in \[0, 1\]"),
        ("data.sample_version", 3, r"data\.sample_version: expected one of \(1, 2\), got 3"),
    ],
)
def test_bad_values_name_the_key(key, value, message):
    config = base_config()
    section, name = key.split(".")
    config[section][name] = value
    with pytest.raises(UserError, match=message):
        validate(config)


def test_a_sample_version_is_refused_beside_a_data_folder():
    """data.sample_version picks a version of the built-in sample; with data.dir set it would be
    silently ignored."""
    config = base_config()
    config.data.update(dir="/data/pcam", sample_version=2)
    with pytest.raises(UserError, match=r"data\.sample_version: expected 1 when data\.dir is set .*'/data/pcam'"):
        validate(config)
    config.data.sample_version = 1
    validate(config)
    config.data.update(dir="", dataset="digits", sample_version=2, digits=(4, 5, 6, 7, 8, 9))
    config.model.num_classes = 6
    with pytest.raises(UserError, match=r"data\.sample_version: expected 1 for the digits task"):
        validate(config)


# Several bad keys: validate names the first in its order (config.checks.check_config), which
# splitting the checks by section kept: the run's name and seed, data, model, training, checkpoint.
CHECK_ORDER = [
    ("seed", -1),
    ("data.batch_size", 0),
    ("data.digits", (4, 4)),
    ("model.num_classes", 3),  # PCAM: checked right after data.digits, before data.sample_version
    ("data.sample_version", 3),
    ("data.normalization", "none"),
    ("model.name", "vit"),
    ("model.dropout_rate", 1.0),
    ("training.epochs", 0),
    ("training.ema_decay", 1.0),
    ("training.scheduler", "linear"),
    ("training.warmup_steps", -1),
    ("training.early_stopping_patience", -1),
    ("training.member_layout", "vectorized"),
    ("training.matmul_precision", "low"),
    ("checkpoint.keep", 0),
    ("checkpoint.best_metric", "val_bogus"),
]


def test_with_several_bad_keys_the_first_in_check_order_is_named():
    for first in range(len(CHECK_ORDER)):
        config = base_config()
        config.update_from_flattened_dict(dict(CHECK_ORDER[first:]))
        key = CHECK_ORDER[first][0]
        with pytest.raises(UserError, match=rf"^config key {key.replace('.', '[.]')}: expected "):
            validate(config)


def test_cosine_needs_min_lr_at_most_the_learning_rate():
    config = base_config()
    config.training.update(scheduler="cosine", learning_rate=1e-3, min_lr=1e-2)
    with pytest.raises(UserError, match=r"training\.min_lr: expected a value <= training\.learning_rate"):
        validate(config)
    config.training.min_lr = 1e-5
    validate(config)


def test_resnet_needs_one_block_count_per_stage():
    config = _load("resnet")
    config.model.resnet_blocks = (2, 2, 2)
    with pytest.raises(UserError, match=r"model\.resnet_blocks: expected 4 positive integers"):
        validate(config)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("--config.training.no_such_key=1", "no_such_key"),
        ("--config.seed=abc", "seed"),
        ("--config.training.optimizer=adm", "training.optimizer"),
    ],
)
def test_cli_errors_are_one_clear_message_without_traceback(tmp_path, override, expected):
    result = run_main(["--config", "configs/mlp.py", f"--workdir={tmp_path / 'run'}", override])
    assert result.returncode != 0
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_data_dir_is_a_clear_error(tmp_path):
    result = run_main(["--config", "configs/mlp.py", f"--workdir={tmp_path / 'run'}", f"--config.data.dir={tmp_path}"])
    assert result.returncode == 2
    assert "missing file camelyonpatch_level_2_split_train_x.h5" in result.stderr
    assert "Traceback" not in result.stderr


def test_config_overrides_reach_the_run(tmp_path, tiny_pcam):
    workdir = tmp_path / "run"
    args = tiny_overrides(tiny_pcam, **{"training.epochs": 1, "training.learning_rate": 3e-4, "seed": 43})
    result = run_main(["--config", "configs/mlp.py", f"--workdir={workdir}", *args])
    assert result.returncode == 0, result.stderr
    import json

    saved = json.loads(Path(workdir / "config.json").read_text())["config"]
    assert saved["seed"] == 43 and saved["training"]["learning_rate"] == 3e-4
    assert saved["model"]["hidden_units"] == [16]


def _broken_copy(src: Path, dst: Path, how: str) -> Path:
    import shutil

    import h5py
    import numpy as np

    shutil.copytree(src, dst)
    x_path = dst / "camelyonpatch_level_2_split_train_x.h5"
    y_path = dst / "camelyonpatch_level_2_split_train_y.h5"
    if how == "corrupt":
        x_path.write_bytes(x_path.read_bytes()[:4096])
    elif how == "shape":
        with h5py.File(x_path, "w") as f:
            f["x"] = np.zeros((256, 64, 64, 3), np.uint8)
    elif how == "labels":
        with h5py.File(y_path, "w") as f:
            f["y"] = np.full((256, 1, 1, 1), 3, np.uint8)
    elif how == "length":
        with h5py.File(y_path, "w") as f:
            f["y"] = np.zeros((250, 1, 1, 1), np.uint8)
    return dst


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("corrupt", "corrupt or truncated"),
        ("shape", r"must have shape (N, 96, 96, 3), got (256, 64, 64, 3)"),
        ("labels", "labels must be 0 or 1, found [3]"),
        ("length", "holds 256 images but camelyonpatch_level_2_split_train_y.h5 holds 250 labels"),
    ],
)
def test_bad_data_files_end_the_run_with_one_line_and_exit_2(tmp_path, tiny_pcam, how, message):
    data = _broken_copy(tiny_pcam, tmp_path / "data", how)
    result = run_main(["--config", "configs/mlp.py", f"--workdir={tmp_path / 'run'}", *tiny_overrides(data)])
    assert result.returncode == 2
    assert "error: " in result.stderr and message in result.stderr
    assert "Traceback" not in result.stderr


def test_in_memory_data_needs_the_main_process_reader():
    config = base_config()
    config.data.in_memory, config.data.num_workers = True, 2
    with pytest.raises(UserError, match=r"data\.num_workers: expected 0 with data\.in_memory=True"):
        validate(config)


def test_a_key_missing_from_a_saved_config_counts_as_its_default_on_resume():
    from jaxpcam.run.keys import result_changes

    current = base_config().to_dict()
    saved = base_config().to_dict()
    del saved["training"]["deterministic"], saved["data"]["placement"]  # a run made before these keys
    assert list(result_changes(saved, current)) == []
    current["training"]["deterministic"] = False
    assert list(result_changes(saved, current)) == ["training.deterministic"]


def test_the_pcam_recipe_is_valid_and_its_features_train_together(tiny_pcam, tmp_path):
    from jaxpcam.core.reporting import captured_log
    from jaxpcam.training.loop import train_and_evaluate

    config = _load("pcam_recipe")
    validate(config)
    assert (config.model.name, config.training.scheduler) == ("resnet", "cosine")
    assert config.data.stain_augment > 0 and config.training.ema_decay > 0 and config.training.warmup_steps > 0
    tiny = {"data.dir": str(tiny_pcam), "data.batch_size": 32, "data.eval_batch_size": 40, "data.num_workers": 0,
            "model.conv_features": (4, 8), "model.resnet_blocks": (1, 1), "training.epochs": 2,
            "training.warmup_steps": 4, "training.dtype": "float32", "training.log_every_steps": 4}  # fmt: skip
    config.update_from_flattened_dict(tiny)
    with captured_log() as lines:
        train_and_evaluate(config, tmp_path / "run")
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2] and all(0 <= r["train_accuracy"] <= 1 for r in records)
    assert records[-1]["lr"] == pytest.approx(config.training.min_lr)  # cosine ends at min_lr
    assert any("EMA weights" in line for line in lines)


def test_the_config_page_documents_every_key():
    """docs/configuration.md's "Config keys" tables are the contract users read: every key of
    base_config() is in a first column (``a.b`` / ``c`` and ``a.b``, ``c`` name keys of one section)."""
    import re

    from conftest import REPO
    from jaxpcam.config.checks import leaves

    page = (REPO / "docs" / "configuration.md").read_text()
    table = page.split("## Config keys", 1)[1].split("\n## ", 1)[0]
    documented = set()
    for row in (line for line in table.splitlines() if line.startswith("| `")):
        names = re.findall(r"`([\w.]+)`", row.split("|")[1])
        section = names[0].rpartition(".")[0]
        documented |= {name if "." in name or not section else f"{section}.{name}" for name in names}
    missing = sorted(key for key, _ in leaves(base_config()) if key not in documented)
    assert missing == []
