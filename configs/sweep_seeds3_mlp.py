"""configs/mlp.py with seeds 42, 43 and 44: the course's mean ± std over 3 seeds, in one program.

python -m jaxpcam.sweep --config configs/sweep_seeds3_mlp.py --all --vectorize
python -m jaxpcam.report runs/pcam_mlp_3seeds
"""

from pathlib import Path

from jaxpcam.config.files import load_config_file


def get_config():
    config = load_config_file(str(Path(__file__).with_name("mlp.py")))
    config.experiment_name = "pcam_mlp_3seeds"
    return config


def get_sweep():
    return {"seed": [42, 43, 44]}
