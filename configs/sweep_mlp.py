"""The seeds' 18-point grid on the course MLP: learning rate x batch size x optimizer.

python -m jaxpcam.sweep --config configs/sweep_mlp.py --list
python -m jaxpcam.sweep --config configs/sweep_mlp.py --index 3     # one point (a SLURM array task)
python -m jaxpcam.sweep --config configs/sweep_mlp.py --all         # all 18 here, one after another
"""

from jaxpcam.config import base_config


def get_config():
    config = base_config()  # the course MLP: (512, 256), dropout 0.2, Adam, 5 epochs
    config.experiment_name = "sweep_mlp"
    return config


def get_sweep():
    return {
        "training.learning_rate": [1e-3, 1e-4, 1e-5],
        "data.batch_size": [32, 64, 128],
        "training.optimizer": ["adam", "sgd"],
    }
