"""The default configuration every experiment file starts from, and its validation.

Experiment files in ``configs/`` call :func:`base_config` and override what differs, so every
key exists in every config and ``--config.x=y`` overrides work the same everywhere.
"""

import math
import numbers

import ml_collections

from jaxpcam.config_files import call_file_function, load_config_file, load_python_file  # noqa: F401 (the API)
from jaxpcam.errors import UserError

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("none", "step", "plateau", "cosine")
NORMALIZATIONS = ("fixed", "train_stats")
DATASETS = ("pcam", "digits")
SAMPLE_VERSIONS = (1, 2)  # data.sample_version; jaxpcam/data/sample.py
DTYPES = ("float32", "bfloat16", "float16")
NAN_POLICIES = ("stop", "skip")
BEST_MODES = ("max", "min")
PLACEMENTS = ("auto", "host", "device")  # data.placement; jaxpcam/training/placement.py
MATMUL_PRECISIONS = ("default", "high", "highest")  # jax_default_matmul_precision


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

    config.model = ml_collections.ConfigDict()
    config.model.name = "mlp"
    config.model.hidden_units = (512, 256)
    config.model.dropout_rate = 0.2
    config.model.num_classes = 1  # 1 = a single logit with sigmoid BCE; >= 2 = softmax CE
    config.model.conv_features = (32, 64, 128)  # 'cnn': conv widths; 'resnet': stage widths
    config.model.resnet_blocks = (2, 2, 2, 2)  # 'resnet': basic blocks per stage (2,2,2,2 = ResNet-18)

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


def _require(condition: bool, key: str, expected: str, value) -> None:
    if not condition:
        raise UserError(f"config key {key}: expected {expected}, got {value!r}")


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


MAX_SIZE = 2**20  # any batch, layer width or block count beyond this is a typo, not a plan


def _positive_ints(value) -> bool:
    """A non-empty tuple of integers in [1, MAX_SIZE] (not floats, bools or strings)."""
    return isinstance(value, tuple | list) and len(value) >= 1 and all(_is_int(v) and 1 <= v <= MAX_SIZE for v in value)


def _leaves(node, prefix: str = ""):
    for key, value in node.items():
        if isinstance(value, ml_collections.ConfigDict):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _require_finite_floats(config: ml_collections.ConfigDict) -> None:
    """Every float in the config (alone or in a tuple) is finite: inf/nan never make sense."""
    for key, value in _leaves(config):
        values = value if isinstance(value, tuple | list) else (value,)
        finite = all(math.isfinite(v) for v in values if isinstance(v, float))
        _require(finite, key, "a finite number", value)


def _kind(value) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, tuple | list):
        return "tuple"
    return type(value).__name__


_KIND_NAMES = {"bool": "True or False", "number": "a number", "tuple": "a tuple, e.g. '(1, 2)'", "str": "a string"}


def _require_known_keys_and_kinds(config: ml_collections.ConfigDict) -> None:
    """Every key is one base_config() has (a typo in a config file is not silently a new key),
    holding the kind of value its default has (not None, not a string for a number)."""
    defaults = dict(_leaves(base_config()))
    for key, value in _leaves(config):
        if key not in defaults:
            section = key.rpartition(".")[0]
            known = sorted(k.rpartition(".")[2] for k in defaults if k.rpartition(".")[0] == section)
            raise UserError(f"unknown config key {key}: {section or 'the config'} has {', '.join(known)}")
        kind = _kind(defaults[key])
        _require(_kind(value) == kind, key, _KIND_NAMES.get(kind, kind), value)


def validate(config: ml_collections.ConfigDict) -> None:
    """Raises UserError naming the first key whose value cannot work."""
    d, m, t = config.data, config.model, config.training
    _require_known_keys_and_kinds(config)
    _require_finite_floats(config)
    _require(bool(config.experiment_name), "experiment_name", "a non-empty name", config.experiment_name)
    _require("/" not in config.experiment_name, "experiment_name", "no '/'", config.experiment_name)
    _require(0 <= config.seed < 2**31, "seed", "an integer in [0, 2**31)", config.seed)
    _require(1 <= d.batch_size <= MAX_SIZE, "data.batch_size", f"an integer in [1, {MAX_SIZE}]", d.batch_size)
    _require(
        1 <= d.eval_batch_size <= MAX_SIZE, "data.eval_batch_size", f"an integer in [1, {MAX_SIZE}]", d.eval_batch_size
    )
    _require(d.num_workers >= 0, "data.num_workers", "an integer >= 0", d.num_workers)
    _require(d.prefetch_batches >= 1, "data.prefetch_batches", "an integer >= 1", d.prefetch_batches)
    _require(d.dataset in DATASETS, "data.dataset", f"one of {DATASETS}", d.dataset)
    _require(d.placement in PLACEMENTS, "data.placement", f"one of {PLACEMENTS}", d.placement)
    _require(
        not (d.in_memory and d.num_workers > 0),
        "data.num_workers",
        "0 with data.in_memory=True (each worker process would hold its own copy of the split)",
        d.num_workers,
    )
    _require(0 < d.valid_fraction < 1, "data.valid_fraction", "a value in (0, 1)", d.valid_fraction)
    _require(
        isinstance(d.digits, tuple | list)
        and all(_is_int(v) and 0 <= v <= 9 for v in d.digits)
        and len(d.digits) >= 2
        and len(set(d.digits)) == len(d.digits),
        "data.digits",
        "2+ distinct digits, integers 0..9, e.g. '(4, 5, 6)'",
        d.digits,
    )
    if d.dataset == "digits":
        _require(m.num_classes == len(d.digits), "model.num_classes", f"{len(d.digits)} (one per digit)", m.num_classes)
    else:
        _require(m.num_classes in (1, 2), "model.num_classes", "1 (one logit) or 2 for PCAM", m.num_classes)
    _require(d.sample_version in SAMPLE_VERSIONS, "data.sample_version", f"one of {SAMPLE_VERSIONS}", d.sample_version)
    _require(
        d.sample_version == 1 or not d.dir or d.dataset != "pcam",
        "data.sample_version",
        f"1 when data.dir is set (it picks a version of the built-in sample; data.dir is {d.dir!r})",
        d.sample_version,
    )
    _require(0 <= d.stain_augment <= 1, "data.stain_augment", "a strength in [0, 1] (0 = off)", d.stain_augment)
    _require(d.normalization in NORMALIZATIONS, "data.normalization", f"one of {NORMALIZATIONS}", d.normalization)

    from jaxpcam.models import MODELS  # deferred: models import jax

    _require(m.name in MODELS, "model.name", f"one of {tuple(MODELS)}", m.name)
    _require(
        _positive_ints(m.hidden_units),
        "model.hidden_units",
        "a non-empty tuple of positive integers, e.g. '(512, 256)'",
        m.hidden_units,
    )
    _require(0.0 <= m.dropout_rate < 1.0, "model.dropout_rate", "a value in [0, 1)", m.dropout_rate)
    _require(m.num_classes >= 1, "model.num_classes", "1 (binary, one logit) or >= 2", m.num_classes)
    _require(
        _positive_ints(m.conv_features),
        "model.conv_features",
        "a non-empty tuple of positive integers, e.g. '(32, 64)'",
        m.conv_features,
    )
    _require(
        _positive_ints(m.resnet_blocks),
        "model.resnet_blocks",
        "a non-empty tuple of positive integers, e.g. '(2, 2, 2, 2)'",
        m.resnet_blocks,
    )
    if m.name == "resnet":
        _require(
            len(m.resnet_blocks) == len(m.conv_features),
            "model.resnet_blocks",
            f"{len(m.conv_features)} positive integers, one per model.conv_features stage",
            m.resnet_blocks,
        )

    _require(1 <= t.epochs <= 10**6, "training.epochs", "an integer in [1, 1000000]", t.epochs)
    _require(t.optimizer in OPTIMIZERS, "training.optimizer", f"one of {OPTIMIZERS}", t.optimizer)
    _require(t.learning_rate > 0, "training.learning_rate", "a value > 0", t.learning_rate)
    _require(0.0 <= t.momentum < 1.0, "training.momentum", "a value in [0, 1)", t.momentum)
    _require(t.weight_decay >= 0, "training.weight_decay", "a value >= 0", t.weight_decay)
    _require(t.grad_clip_norm >= 0, "training.grad_clip_norm", "a value >= 0 (0 = off)", t.grad_clip_norm)
    _require(
        1 <= t.grad_accum_steps <= 2**16, "training.grad_accum_steps", "an integer in [1, 65536]", t.grad_accum_steps
    )
    _require(0 <= t.ema_decay < 1, "training.ema_decay", "a value in [0, 1) (0 = off), e.g. 0.999", t.ema_decay)
    _require(t.scheduler in SCHEDULERS, "training.scheduler", f"one of {SCHEDULERS}", t.scheduler)
    _require(t.step_size >= 1, "training.step_size", "an integer >= 1", t.step_size)
    _require(0 < t.gamma <= 1, "training.gamma", "a value in (0, 1]", t.gamma)
    _require(0 < t.plateau_factor < 1, "training.plateau_factor", "a value in (0, 1)", t.plateau_factor)
    _require(t.plateau_patience >= 0, "training.plateau_patience", "an integer >= 0", t.plateau_patience)
    _require(t.plateau_threshold >= 0, "training.plateau_threshold", "a value >= 0", t.plateau_threshold)
    _require(t.plateau_cooldown >= 0, "training.plateau_cooldown", "an integer >= 0", t.plateau_cooldown)
    _require(t.min_lr >= 0, "training.min_lr", "a value >= 0", t.min_lr)
    if t.scheduler == "cosine":
        _require(
            t.min_lr <= t.learning_rate,
            "training.min_lr",
            f"a value <= training.learning_rate ({t.learning_rate}) with scheduler=cosine",
            t.min_lr,
        )
    _require(
        _is_int(t.warmup_steps) and 0 <= t.warmup_steps <= 10**9,
        "training.warmup_steps",
        "an integer >= 0 (0 = none)",
        t.warmup_steps,
    )
    _require(
        _is_int(t.early_stopping_patience) and 0 <= t.early_stopping_patience <= 10**6,
        "training.early_stopping_patience",
        "an integer >= 0 (epochs without improvement; 0 = off)",
        t.early_stopping_patience,
    )
    _require(t.log_every_steps >= 1, "training.log_every_steps", "an integer >= 1", t.log_every_steps)
    _require(t.dtype in DTYPES, "training.dtype", f"one of {DTYPES}", t.dtype)
    _require(t.nan_policy in NAN_POLICIES, "training.nan_policy", f"one of {NAN_POLICIES}", t.nan_policy)
    _require(
        t.matmul_precision in MATMUL_PRECISIONS,
        "training.matmul_precision",
        f"one of {MATMUL_PRECISIONS}",
        t.matmul_precision,
    )
    c = config.checkpoint
    _require(c.keep >= 1, "checkpoint.keep", "an integer >= 1", c.keep)
    _require(c.every_steps >= 0, "checkpoint.every_steps", "an integer >= 0 (0 = epoch ends only)", c.every_steps)
    _require(c.best_mode in BEST_MODES, "checkpoint.best_mode", f"one of {BEST_MODES}", c.best_mode)
    from jaxpcam.task import task_for  # deferred: imports jax and scikit-learn

    allowed = task_for(config).metric_names
    _require(
        c.best_metric in allowed,
        "checkpoint.best_metric",
        f"one of the metrics training logs for this task: {', '.join(allowed)}",
        c.best_metric,
    )
