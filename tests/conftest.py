import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from jaxpcam.core.runtime import prepare_process
from jaxpcam.data.sample import write_sample

if "JAXPCAM_COMPILE_CACHE" not in os.environ:  # the tests' own compilation cache, never the user's
    os.environ["JAXPCAM_COMPILE_CACHE"] = tempfile.mkdtemp(prefix="jaxpcam-test-xla-")
    atexit.register(shutil.rmtree, os.environ["JAXPCAM_COMPILE_CACHE"], ignore_errors=True)
prepare_process(restart=False)  # the test process is set up as a command's would be

REPO = Path(__file__).resolve().parents[1]
TINY_SIZES = {"train": 256, "valid": 96, "test": 32}


@pytest.fixture(scope="session")
def tiny_pcam(tmp_path_factory) -> Path:
    """A tiny data set in the exact PCAM file format, written by the built-in generator."""
    out = tmp_path_factory.mktemp("pcam")
    write_sample(out, TINY_SIZES, seed=7)
    return out


def tiny_overrides(data_dir: Path, **extra) -> list[str]:
    """Overrides that make configs/mlp.py train in seconds on the tiny data."""
    values = {
        "data.dir": str(data_dir),
        "data.batch_size": 32,
        "data.eval_batch_size": 40,
        "model.hidden_units": "(16,)",
        "training.epochs": 2,
        "training.log_every_steps": 3,
        **extra,
    }
    return [f"--config.{k}={v}" for k, v in values.items()]


# Each model's section at a size that trains in seconds on the tiny data.
TINY_MODELS = {
    "mlp": {"name": "mlp", "hidden_units": (16,), "dropout_rate": 0.2, "num_classes": 1},
    "cnn": {"name": "cnn", "conv_features": (4, 8), "hidden_units": (8,), "dropout_rate": 0.2, "num_classes": 1},
    "resnet": {"name": "resnet", "conv_features": (4, 8), "resnet_blocks": (1, 1), "num_classes": 1},
}


def tiny_config(data_dir: Path, model: str = "mlp", **extra):
    """configs/mlp.py with the values of ``tiny_overrides`` and the model ``TINY_MODELS[model]``,
    as a ConfigDict (typed values)."""
    import ml_collections

    from jaxpcam.config.files import load_config_file

    config = load_config_file(str(REPO / "configs" / "mlp.py"))
    config.model = ml_collections.ConfigDict(TINY_MODELS[model])
    values = {
        "data.dir": str(data_dir),
        "data.batch_size": 32,
        "data.eval_batch_size": 40,
        "training.epochs": 2,
        "training.log_every_steps": 3,
        **extra,
    }
    config.update_from_flattened_dict(values)
    return config


def train_in_process(workdir: Path, data_dir: Path, model: str = "mlp", **extra) -> list[str]:
    """Trains like ``python -m jaxpcam.main`` with ``tiny_overrides`` but in this process (no
    interpreter start, JAX import or recompile of the same step); returns the log lines.
    Subprocesses stay for what needs a process: exit codes, signals, kills, stderr."""
    from jaxpcam.core.reporting import captured_log
    from jaxpcam.training.loop import train_and_evaluate

    with captured_log() as lines:
        train_and_evaluate(tiny_config(data_dir, model, **extra), workdir)
    return lines


def command(module: str, args: list[str], kill_after_save: int | None = None) -> list[str]:
    """``python -m module args``; with ``kill_after_save`` it is SIGKILLed right after the
    checkpoint save at that global step has started (tests/kill_after_save.py)."""
    if kill_after_save is None:
        return [sys.executable, "-m", module, *args]
    return [sys.executable, str(REPO / "tests" / "kill_after_save.py"), str(kill_after_save), module, *args]


def run_main(
    args: list[str], env_extra: dict | None = None, timeout: int = 300, kill_after_save: int | None = None
) -> subprocess.CompletedProcess:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", **(env_extra or {})}
    return subprocess.run(
        command("jaxpcam.main", args, kill_after_save),
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


TIMING_FIELDS = {"images_per_second", "data_wait_fraction"}


def metrics_without_timing(workdir: Path) -> list[dict]:
    """metrics.jsonl without the fields that measure speed (they differ between equal runs)."""
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING_FIELDS} for line in lines]


def tiny_state():
    """A train state of a 2-unit MLP: enough for checkpoint tests."""
    import jax

    from jaxpcam.config import base_config
    from jaxpcam.data.normalization import fixed_normalization
    from jaxpcam.models import create_model
    from jaxpcam.training.state import create_train_state, make_optimizer

    config = base_config()
    config.model.hidden_units = (2,)
    model = create_model(config.model)
    return create_train_state(jax.random.key(0), model, make_optimizer(config.training), fixed_normalization())


@pytest.fixture
def messages():
    """The log lines of the test (jaxpcam.core.reporting.captured_log)."""
    from jaxpcam.core.reporting import captured_log

    with captured_log() as lines:
        yield lines


@pytest.fixture
def lines(messages):
    return messages
