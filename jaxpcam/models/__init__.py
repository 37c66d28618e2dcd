"""Model registry: ``config.model.name`` -> a constructor taking the model config and dtype."""

import jax.numpy as jnp
import ml_collections

from jaxpcam.models.cnn import CNN
from jaxpcam.models.mlp import MLP
from jaxpcam.models.resnet import ResNet


def _mlp(cfg: ml_collections.ConfigDict, dtype) -> MLP:
    return MLP(tuple(cfg.hidden_units), cfg.dropout_rate, cfg.num_classes, dtype)


def _cnn(cfg: ml_collections.ConfigDict, dtype) -> CNN:
    return CNN(tuple(cfg.conv_features), tuple(cfg.hidden_units), cfg.dropout_rate, cfg.num_classes, dtype)


def _resnet(cfg: ml_collections.ConfigDict, dtype) -> ResNet:
    return ResNet(tuple(cfg.conv_features), tuple(cfg.resnet_blocks), cfg.num_classes, dtype)


MODELS = {"mlp": _mlp, "cnn": _cnn, "resnet": _resnet}


def create_model(model_config: ml_collections.ConfigDict, dtype: str = "float32"):
    return MODELS[model_config.name](model_config, jnp.dtype(dtype))
