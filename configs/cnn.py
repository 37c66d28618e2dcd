"""A small conv net on PCAM: 4x4 stride-4 stem, two 3x3 conv + max-pool stages, dense head."""

from jaxpcam.config import base_config


def get_config():
    config = base_config()
    config.experiment_name = "pcam_cnn"
    config.model.name = "cnn"
    config.model.conv_features = (32, 64, 128)
    config.model.hidden_units = (128,)
    config.model.dropout_rate = 0.2
    config.training.epochs = 5
    return config
