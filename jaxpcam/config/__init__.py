"""The default configuration every experiment file starts from.

Experiment files in ``configs/`` call :func:`base_config` and override what differs, so every
key exists in every config and ``--config.x=y`` overrides work the same everywhere; the model
section is the model's own (a file for another model replaces it). What each key allows is in
jaxpcam/config/checks.py.
"""

import ml_collections


def base_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.experiment_name = "pcam_mlp"
    config.seed = 42

    config.data = ml_collections.ConfigDict()
    config.data.dataset = "pcam"  # 'pcam', or 'digits' (the SMLP task)
    config.data.dir = ""  # '' = the built-in synthetic sample in PCAM format
    config.data.sample_version = 1  # data.dir '': 1, or 2 (per-slide stain spread; test split from another lab)
    config.data.digits_file = ""  # digits HDF5 (images, labels); '' = built from scikit-learn's digits
    config.data.digits = (4, 5, 6, 7, 8, 9)  # kept digits, read as classes 0..len-1
    config.data.valid_fraction = 0.1  # digits: seeded train/valid split
    config.data.batch_size = 128
    config.data.eval_batch_size = 512
    config.data.num_workers = 0  # Grain worker processes; 0 reads in this process with threads
    config.data.prefetch_batches = 4
    config.data.placement = "auto"  # 'host' (Grain reads batches), 'device' (splits in accelerator memory), 'auto'
    config.data.in_memory = False  # placement=host: read train+valid into RAM once (7.9 GB for full PCAM)
    config.data.balanced_sampling = True  # like torch's WeightedRandomSampler(replacement=True)
    config.data.normalization = "fixed"  # 'fixed' = (x/255 - 0.5)/0.5, or 'train_stats'
    config.data.augment = True  # random flips and 90 degree rotations, training only
    config.data.stain_augment = 0.0  # H-E-DAB stain + brightness/contrast jitter strength, training only; 0 = off
    config.data.filter = False  # train on the audit's clean-index manifest (python -m jaxpcam.audit)
    config.data.audit_dir = ""  # where the audit wrote manifest_train.json; '' = <data.dir>/jaxpcam-audit

    # The model: jaxpcam/models/<name>.py, built from the other keys, which are exactly its fields.
    # Another model's config file replaces this section with that model's keys (configs/cnn.py).
    config.model = ml_collections.ConfigDict()
    config.model.name = "mlp"
    config.model.hidden_units = (512, 256)
    config.model.dropout_rate = 0.2
    config.model.num_classes = 1  # 1 = a single logit with sigmoid BCE; >= 2 = softmax CE

    config.training = ml_collections.ConfigDict()
    config.training.epochs = 5
    config.training.optimizer = "adam"
    config.training.learning_rate = 1e-3
    config.training.momentum = 0.9  # sgd only
    config.training.weight_decay = 0.0  # L2 added to the gradient, as torch's Adam/SGD do
    config.training.grad_clip_norm = 0.0  # 0 disables clipping
    config.training.grad_accum_steps = 1  # k > 1: one update per k micro-batches of data.batch_size
    config.training.ema_decay = 0.0  # > 0: validate, evaluate and predict with an EMA of the params
    config.training.scheduler = "none"
    config.training.step_size = 2  # 'step': multiply by gamma every step_size epochs
    config.training.gamma = 0.1
    config.training.plateau_factor = 0.1  # 'plateau': torch ReduceLROnPlateau(mode='min')
    config.training.plateau_patience = 2
    config.training.plateau_threshold = 1e-4
    config.training.plateau_cooldown = 0
    config.training.min_lr = 0.0  # 'plateau': the floor; 'cosine': the rate at the last step
    config.training.warmup_steps = 0  # linear warmup over the first N steps, any scheduler; 0 = none
    config.training.early_stopping_patience = 0  # stop after N epochs without a better best_metric; 0 = off
    config.training.log_every_steps = 20
    config.training.dtype = "float32"  # compute dtype; params and loss stay float32
    config.training.nan_policy = "stop"  # non-finite loss/grad norm: 'stop', or 'skip' the update
    config.training.deterministic = True  # GPU: bit-identical twin runs (--xla_gpu_deterministic_ops)
    config.training.matmul_precision = "default"  # float32 matmuls: 'default' (TF32 on A100/H100), 'high', 'highest'

    config.checkpoint = ml_collections.ConfigDict()
    config.checkpoint.keep = 2  # the latest epoch-end checkpoints kept; the newest and the best besides
    config.checkpoint.every_steps = 200  # also checkpoint mid-epoch every N steps; 0 = epoch ends only
    config.checkpoint.best_metric = "val_roc_auc"  # a val_ field of metrics.jsonl: Task.metric_names
    config.checkpoint.best_mode = "max"
    return config
