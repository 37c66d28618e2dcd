"""The course's SMLP on handwritten digits 4-9: 4 hidden layers of 77 units, ReLU, 6 logits with
softmax cross-entropy, Adam. Data: data.digits_file (images (N, 28, 28), labels (N,)), or, when
empty, scikit-learn's bundled digits written in that layout; a seeded 90/10 train/valid split.
"""

from jaxpcam.config import base_config


def get_config():
    config = base_config()
    config.experiment_name = "digits_smlp"
    config.data.dataset = "digits"
    config.data.batch_size = 64
    config.data.eval_batch_size = 256
    config.data.augment = False  # flips and rotations would turn a 6 into a 9
    config.data.balanced_sampling = False
    config.model.name = "mlp"
    config.model.hidden_units = (77, 77, 77, 77)
    config.model.dropout_rate = 0.0
    config.model.num_classes = 6
    config.training.epochs = 30
    config.training.learning_rate = 1e-3
    config.training.log_every_steps = 15
    config.checkpoint.best_metric = "val_accuracy"
    config.checkpoint.every_steps = 0
    return config
