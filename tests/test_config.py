import importlib.util
from pathlib import Path

import pytest
from conftest import REPO, run_main, tiny_overrides

from jaxpcam.config import base_config, validate
from jaxpcam.errors import UserError


def _load(name):
    spec = importlib.util.spec_from_file_location(name, REPO / "configs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def test_shipped_configs_are_valid_and_have_the_contract_keys():
    mlp, cnn = _load("mlp"), _load("cnn")
    for config in (mlp, cnn):
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
        ("data.batch_size", 0, "data.batch_size: expected an integer >= 1"),
        ("model.name", "vit", "model.name: expected one of"),
        ("training.scheduler", "cosine", "training.scheduler"),
        ("model.dropout_rate", 1.0, "model.dropout_rate"),
        ("training.dtype", "float64", "training.dtype"),
    ],
)
def test_bad_values_name_the_key(key, value, message):
    config = base_config()
    section, name = key.split(".")
    config[section][name] = value
    with pytest.raises(UserError, match=message):
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
