"""A small conv net on PCAM: 4x4 stride-4 stem, two 3x3 conv + max-pool stages, dense head."""

import ml_collections

from jaxpcam.config import base_config


def get_config():
    config = base_config()
    config.experiment_name = "pcam_cnn"
    config.model = ml_collections.ConfigDict()  # jaxpcam/models/cnn.py's fields
    config.model.name = "cnn"
    config.model.conv_features = (32, 64, 128)  # the 4x4 stem's width, then each 3x3 stage's
    config.model.hidden_units = (128,)
    config.model.dropout_rate = 0.2
    config.model.num_classes = 1
    config.training.epochs = 5
    return config
