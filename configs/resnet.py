"""ResNet-18 layout with GroupNorm (stateless) on PCAM: a GPU model; slow on a laptop CPU."""

import ml_collections

from jaxpcam.config import base_config


def get_config():
    config = base_config()
    config.experiment_name = "pcam_resnet"
    config.model = ml_collections.ConfigDict()  # jaxpcam/models/resnet.py's fields
    config.model.name = "resnet"
    config.model.conv_features = (64, 128, 256, 512)  # each stage's width
    config.model.resnet_blocks = (2, 2, 2, 2)  # basic blocks per stage (2, 2, 2, 2 = ResNet-18)
    config.model.num_classes = 1
    config.training.optimizer = "adamw"
    config.training.weight_decay = 1e-4
    config.training.epochs = 10
    return config
