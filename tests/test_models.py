"""A model is one file: jaxpcam/models/<name>.py defines ``Model``, whose fields are exactly the
keys of config.model (name aside); the registry finds it, validation checks the section against
it, and ``--config.model.x=y`` overrides each key it takes."""

import json
import sys

import jax
import ml_collections
import numpy as np
import pytest
from ml_collections import config_flags

import jaxpcam.models
from conftest import REPO, tiny_config
from jaxpcam import cli, main
from jaxpcam.config import base_config
from jaxpcam.config.checks import validate
from jaxpcam.config.files import load_config_file
from jaxpcam.core.errors import UserError
from jaxpcam.models import create_model, model_defaults, model_names
from jaxpcam.training.loop import train_and_evaluate

SHIPPED = ["mlp", "cnn", "resnet", "pcam_recipe", "smlp_digits"]

ONE_FILE_MODEL = """
import flax.linen as nn
import jax.numpy as jnp


class Linear(nn.Module):
    scale: float = 1.0
    num_classes: int = 1
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, images, *, train):
        x = images.reshape((images.shape[0], -1)).astype(self.dtype) * self.scale
        return nn.Dense(self.num_classes, dtype=self.dtype)(x).astype(jnp.float32)


Model = Linear
"""


def test_the_models_are_the_modules_that_define_model():
    assert model_names() == ("cnn", "mlp", "resnet")
    assert list(model_defaults("resnet")) == ["conv_features", "resnet_blocks", "num_classes"]


@pytest.mark.parametrize("name", SHIPPED)
def test_each_config_file_holds_exactly_its_models_keys_and_builds_it(name):
    config = load_config_file(str(REPO / "configs" / f"{name}.py"))
    validate(config)
    assert set(config.model) == {"name", *model_defaults(config.model.name)}
    model = create_model(config.model, "bfloat16")
    assert {key: getattr(model, key) for key in model_defaults(config.model.name)} == {
        key: value for key, value in config.model.items() if key != "name"
    }
    assert model.dtype == np.dtype("bfloat16")


def test_base_config_holds_the_mlps_keys():
    assert base_config().model.to_dict() == {"name": "mlp", "hidden_units": (512, 256), "dropout_rate": 0.2,
                                             "num_classes": 1}  # fmt: skip


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": "vit"}, r"^config key model\.name: expected one of \('cnn', 'mlp', 'resnet'\), got 'vit'$"),
        ({"name": "cnn"}, r"^config key model\.conv_features is missing: the cnn model takes name, conv_features, "),
        ({"resnet_blocks": (2, 2)}, r"^unknown config key model\.resnet_blocks: the mlp model takes name, hidden_u"),
        ({"dropout_rate": "0.1"}, r"^config key model\.dropout_rate: expected a number, got '0\.1'$"),
        ({"name": 3}, r"^config key model\.name: expected a string, got 3$"),
    ],
)
def test_a_model_section_that_does_not_fit_its_model_is_one_line_naming_the_key(change, message):
    config = base_config()
    config.model = ml_collections.ConfigDict({**config.model.to_dict(), **change})
    with pytest.raises(UserError, match=message):
        validate(config)


def _parse(monkeypatch, *args):
    flag_values = cli.command_flags()
    config_flags.DEFINE_config_file("config", None, "config file", flag_values=flag_values, lock_config=True)
    cli.parse(list(args), flag_values, main.__doc__, required=("config",))
    return flag_values.config


def test_overrides_reach_every_key_a_model_takes_and_only_those(monkeypatch, capsys):
    config = _parse(monkeypatch, "--config=configs/resnet.py", "--config.model.conv_features=(4, 8)",
                    "--config.model.resnet_blocks=(1, 3)", "--config.model.num_classes=2")  # fmt: skip
    validate(config)
    assert create_model(config.model).resnet_blocks == (1, 3)
    with pytest.raises(SystemExit):
        _parse(monkeypatch, "--config=configs/cnn.py", "--config.model.resnet_blocks=(1,)")
    assert capsys.readouterr().err == (
        "error: unknown config key model.resnet_blocks: model has conv_features, dropout_rate, hidden_units, name, "
        "num_classes\n"
    )


def test_adding_a_model_is_adding_its_file(tmp_path, tiny_pcam, monkeypatch):
    """A module with ``Model`` in the package's folder is a model: validated, built and trained
    with nothing else changed."""
    (tmp_path / "linear.py").write_text(ONE_FILE_MODEL)
    monkeypatch.setattr(jaxpcam.models, "__path__", [*jaxpcam.models.__path__, str(tmp_path)])
    monkeypatch.delitem(sys.modules, "jaxpcam.models.linear", raising=False)
    assert model_names() == ("cnn", "linear", "mlp", "resnet")
    config = tiny_config(tiny_pcam, **{"training.epochs": 1})
    config.model = ml_collections.ConfigDict({"name": "linear", "scale": 0.5, "num_classes": 1})
    validate(config)
    train_and_evaluate(config, tmp_path / "run")
    assert json.loads((tmp_path / "run" / "config.json").read_text())["config"]["model"]["scale"] == 0.5
    params = create_model(config.model).init(jax.random.key(0), np.zeros((1, 2, 2, 3)), train=False)["params"]
    assert params["Dense_0"]["kernel"].shape == (12, 1)
    sys.modules.pop("jaxpcam.models.linear", None)
