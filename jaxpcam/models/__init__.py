"""Model registry: ``config.model.name`` -> a constructor taking the model config and dtype."""

import jax.numpy as jnp
import ml_collections

from jaxpcam.models.cnn import CNN
from jaxpcam.models.mlp import MLP


def _mlp(cfg: ml_collections.ConfigDict, dtype) -> MLP:
    return MLP(tuple(cfg.hidden_units), cfg.dropout_rate, cfg.num_classes, dtype)


def _cnn(cfg: ml_collections.ConfigDict, dtype) -> CNN:
    return CNN(tuple(cfg.conv_features), tuple(cfg.hidden_units), cfg.dropout_rate, cfg.num_classes, dtype)


MODELS = {"mlp": _mlp, "cnn": _cnn}


def create_model(model_config: ml_collections.ConfigDict, dtype: str = "float32"):
    return MODELS[model_config.name](model_config, jnp.dtype(dtype))
