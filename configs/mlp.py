"""The course MLP on PCAM: 27648 -> 512 -> 256 -> 1 logit, Adam 1e-3, batch 128, 5 epochs.

Step decay is available with --config.training.scheduler=step (step_size, gamma) and
ReduceLROnPlateau-style decay with --config.training.scheduler=plateau.
"""

from jaxpcam.config import base_config


def get_config():
    config = base_config()
    config.experiment_name = "pcam_mlp"
    config.model.name = "mlp"
    config.model.hidden_units = (512, 256)
    config.model.dropout_rate = 0.2
    return config
