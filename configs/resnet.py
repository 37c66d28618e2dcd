"""ResNet-18 layout with GroupNorm (stateless) on PCAM: a GPU model; slow on a laptop CPU."""

from jaxpcam.config import base_config


def get_config():
    config = base_config()
    config.experiment_name = "pcam_resnet"
    config.model.name = "resnet"
    config.model.conv_features = (64, 128, 256, 512)
    config.model.resnet_blocks = (2, 2, 2, 2)
    config.training.optimizer = "adamw"
    config.training.weight_decay = 1e-4
    config.training.epochs = 10
    return config
