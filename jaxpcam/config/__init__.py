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

    config.data = _data()
    # The model: jaxpcam/models/<name>.py, built from the other keys, which are exactly its fields.
    # Another model's config file replaces this section with that model's keys (configs/cnn.py).
    config.model = _mlp()
    config.training = _training()
    config.checkpoint = _checkpoint()
    return config


def _data() -> ml_collections.ConfigDict:
    data = ml_collections.ConfigDict()
    data.dataset = "pcam"  # 'pcam', or 'digits' (the SMLP task)
    data.dir = ""  # '' = the built-in synthetic sample in PCAM format
    data.sample_version = 1  # data.dir '': 1, or 2 (per-slide stain spread; test split from another lab)
    data.digits_file = ""  # digits HDF5 (images, labels); '' = built from scikit-learn's digits
    data.digits = (4, 5, 6, 7, 8, 9)  # kept digits, read as classes 0..len-1
    data.valid_fraction = 0.1  # digits: seeded train/valid split
    data.batch_size = 128
    data.eval_batch_size = 512
    data.num_workers = 0  # Grain worker processes; 0 reads in this process with threads
    data.prefetch_batches = 4
    data.placement = "auto"  # 'host' (Grain reads batches), 'device' (splits in accelerator memory), 'auto'
    data.in_memory = False  # placement=host: read train+valid into RAM once (7.9 GB for full PCAM)
    data.balanced_sampling = True  # like torch's WeightedRandomSampler(replacement=True)
    data.normalization = "fixed"  # 'fixed' = (x/255 - 0.5)/0.5, or 'train_stats'
    data.augment = True  # random flips and 90 degree rotations, training only
    data.stain_augment = 0.0  # H-E-DAB stain + brightness/contrast jitter strength, training only; 0 = off
    data.filter = False  # train on the audit's clean-index manifest (python -m jaxpcam.audit)
    data.audit_dir = ""  # where the audit wrote manifest_train.json; '' = <data.dir>/jaxpcam-audit

    return data


def _mlp() -> ml_collections.ConfigDict:
    model = ml_collections.ConfigDict()
    model.name = "mlp"
    model.hidden_units = (512, 256)
    model.dropout_rate = 0.2
    model.num_classes = 1  # 1 = a single logit with sigmoid BCE; >= 2 = softmax CE
    return model


def _training() -> ml_collections.ConfigDict:
    training = ml_collections.ConfigDict()
    training.epochs = 5
    training.optimizer = "adam"
    training.learning_rate = 1e-3
    training.momentum = 0.9  # sgd only
    training.weight_decay = 0.0  # L2 added to the gradient, as torch's Adam/SGD do
    training.grad_clip_norm = 0.0  # 0 disables clipping
    training.grad_accum_steps = 1  # k > 1: one update per k micro-batches of data.batch_size
    training.ema_decay = 0.0  # > 0: validate, evaluate and predict with an EMA of the params
    training.scheduler = "none"
    training.step_size = 2  # 'step': multiply by gamma every step_size epochs
    training.gamma = 0.1
    training.plateau_factor = 0.1  # 'plateau': torch ReduceLROnPlateau(mode='min')
    training.plateau_patience = 2
    training.plateau_threshold = 1e-4
    training.plateau_cooldown = 0
    training.min_lr = 0.0  # 'plateau': the floor; 'cosine': the rate at the last step
    training.warmup_steps = 0  # linear warmup over the first N steps, any scheduler; 0 = none
    training.early_stopping_patience = 0  # stop after N epochs without a better best_metric; 0 = off
    training.log_every_steps = 20
    training.steps_per_dispatch = 1  # K > 1: run up to K steps per jitted call (same numbers, less overhead)
    training.member_layout = "one_after_another"  # members trained together: their own kernels, or 'vmap'
    training.dtype = "float32"  # compute dtype; params and loss stay float32
    training.nan_policy = "stop"  # non-finite loss/grad norm: 'stop', or 'skip' the update
    training.deterministic = True  # GPU: bit-identical twin runs (--xla_gpu_deterministic_ops)
    training.matmul_precision = "default"  # float32 matmuls: 'default' (TF32 on A100/H100), 'high', 'highest'
    return training


def _checkpoint() -> ml_collections.ConfigDict:
    checkpoint = ml_collections.ConfigDict()
    checkpoint.keep = 2  # the latest epoch-end checkpoints kept; the newest and the best besides
    checkpoint.every_steps = 200  # also checkpoint mid-epoch every N steps; 0 = epoch ends only
    checkpoint.best_metric = "val_roc_auc"  # a val_ field of metrics.jsonl: Task.metric_names
    checkpoint.best_mode = "max"
    return checkpoint
