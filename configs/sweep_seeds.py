"""One config, five seeds: how much of a difference between configs is only the seed.

python -m jaxpcam.sweep --config configs/sweep_seeds.py --all
"""

from jaxpcam.config import base_config


def get_config():
    config = base_config()
    config.experiment_name = "sweep_seeds_mlp"
    return config


def get_sweep():
    return {"seed": [42, 43, 44, 45, 46]}
