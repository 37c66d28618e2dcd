"""The models: every module of this package that defines ``Model`` (a Flax module) is one, named
by its module; ``jaxpcam/models/cnn.py`` is ``model.name='cnn'``. Adding a model is adding its
module (and a config file in configs/): nothing here lists them.

``config.model`` holds ``name`` and exactly the fields of its ``Model`` (``dtype`` aside: it is
``training.dtype``), and the model is ``Model(**those fields, dtype=...)``. The fields' defaults
say what kind of value each key holds (validation checks it against them); a run takes every value
from its config, so a config names them all. Every model takes ``num_classes``, the task's logits
(1: one logit, sigmoid BCE; >= 2: softmax CE). A module may define
``config_problem(model_config) -> (key, what it expects) | None`` for what its keys need beyond
that (jaxpcam/config/checks.py says it as a config error).
"""

import dataclasses
import importlib
import pkgutil
from types import ModuleType

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from jaxpcam.core.errors import UserError

# Fields of every Flax module that are no config keys: Flax's own, and the compute dtype.
NOT_CONFIG_KEYS = ("parent", "name", "dtype")


def _module(name: str) -> ModuleType:
    return importlib.import_module(f"{__name__}.{name}")


def model_names() -> tuple[str, ...]:
    """The names config.model.name may take: this package's modules that define ``Model``."""
    modules = (m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))
    return tuple(sorted(name for name in modules if hasattr(_module(name), "Model")))


def model_module(name: str) -> ModuleType:
    """The module of the model called ``name``; UserError when there is none."""
    names = model_names()
    if name not in names:
        raise UserError(f"unknown model {name!r}: the models are {', '.join(names)}")
    return _module(name)


def model_defaults(name: str) -> dict:
    """{config key: default value} of the model ``name``, in the order its class declares them."""
    fields = dataclasses.fields(model_module(name).Model)
    return {f.name: f.default for f in fields if f.name not in NOT_CONFIG_KEYS}


def config_problem(model_config: ml_collections.ConfigDict) -> tuple[str, str] | None:
    """(key, what it expects) when the model's own check finds one that cannot work, else None."""
    check = getattr(model_module(model_config.name), "config_problem", None)
    return check(model_config) if check else None


def create_model(model_config, dtype: str = "float32") -> nn.Module:
    """The model ``model_config`` (config.model, or the dict a run stored) describes; JSON's
    lists become tuples again."""
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in model_config.items() if k != "name"}
    return model_module(model_config["name"]).Model(**values, dtype=jnp.dtype(dtype))
