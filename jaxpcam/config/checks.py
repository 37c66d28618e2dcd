"""What each config key allows: the checks behind :func:`validate`, one function per
section, run in a fixed order so that the first key that cannot work is the one named.

The defaults, and so which keys exist, are jaxpcam.config.base_config().
"""

import math
import numbers

import ml_collections

from jaxpcam.config import base_config
from jaxpcam.core.errors import UserError
from jaxpcam.core.task import task_for
from jaxpcam.models import config_problem, model_defaults, model_names

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("none", "step", "plateau", "cosine")
NORMALIZATIONS = ("fixed", "train_stats")
DATASETS = ("pcam", "digits")
SAMPLE_VERSIONS = (1, 2)  # data.sample_version; jaxpcam/data/sample.py
DTYPES = ("float32", "bfloat16", "float16")
NAN_POLICIES = ("stop", "skip")
MEMBER_LAYOUTS = ("one_after_another", "vmap")  # training/members.py
BEST_MODES = ("max", "min")
PLACEMENTS = ("auto", "host", "device")  # data.placement; jaxpcam/training/placement.py
MATMUL_PRECISIONS = ("default", "high", "highest")  # jax_default_matmul_precision
MAX_SIZE = 2**20  # any batch, layer width or block count beyond this is a typo, not a plan


def check_config(config: ml_collections.ConfigDict, defaults: ml_collections.ConfigDict) -> None:
    """Raises UserError naming the first key whose value cannot work; ``defaults`` is
    base_config(), which says which keys exist and what kind of value each holds."""
    _require_known_keys_and_kinds(config, defaults)
    _require_finite_floats(config)
    _check_run_name_and_seed(config)
    _check_data_reading(config.data)
    _check_classes_for_dataset(config.data, config.model)
    _check_data_source_and_images(config.data)
    _check_model(config.model)
    _check_updates(config.training)
    _check_schedule(config.training)
    _check_run_control(config.training)
    _check_checkpoint(config)


def _require(condition: bool, key: str, expected: str, value) -> None:
    if not condition:
        raise UserError(f"config key {key}: expected {expected}, got {value!r}")


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _positive_ints(value) -> bool:
    """A non-empty tuple of integers in [1, MAX_SIZE] (not floats, bools or strings)."""
    return isinstance(value, tuple | list) and len(value) >= 1 and all(_is_int(v) and 1 <= v <= MAX_SIZE for v in value)


def leaves(node: ml_collections.ConfigDict, prefix: str = ""):
    """(dotted key, value) of every value in the config, sections flattened."""
    for key, value in node.items():
        if isinstance(value, ml_collections.ConfigDict):
            yield from leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _kind(value) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, tuple | list):
        return "tuple"
    return type(value).__name__


_KIND_NAMES = {"bool": "True or False", "number": "a number", "tuple": "a tuple, e.g. '(1, 2)'", "str": "a string"}


def _require_known_keys_and_kinds(config: ml_collections.ConfigDict, defaults: ml_collections.ConfigDict) -> None:
    """Every key is one base_config() has (a typo in a config file is not silently a new key),
    holding the kind of value its default has (not None, not a string for a number); the model
    section is checked against its model's fields (_require_model_keys)."""
    default_values = {k: v for k, v in leaves(defaults) if not k.startswith("model.")}
    for key, value in leaves(config):
        if key.startswith("model."):
            continue
        if key not in default_values:
            section = key.rpartition(".")[0]
            known = sorted(k.rpartition(".")[2] for k in default_values if k.rpartition(".")[0] == section)
            raise UserError(f"unknown config key {key}: {section or 'the config'} has {', '.join(known)}")
        _require_kind(key, value, default_values[key])
    _require_model_keys(config.get("model"))


def _require_kind(key: str, value, default) -> None:
    kind = _kind(default)
    _require(_kind(value) == kind, key, _KIND_NAMES.get(kind, kind), value)


def _require_model_keys(m) -> None:
    """The model section holds exactly the keys its model takes, each of the kind of the field's
    default. An unknown model.name is left to _check_model, in its turn."""
    _require(isinstance(m, ml_collections.ConfigDict), "model", "a section (model.name and the model's keys)", m)
    _require_kind("model.name", m.get("name"), "mlp")
    if m.name not in model_names():
        return
    defaults = model_defaults(m.name)
    takes = f"the {m.name} model takes name, {', '.join(defaults)}"
    for key in m:
        if key != "name" and key not in defaults:
            raise UserError(f"unknown config key model.{key}: {takes}")
    for key, default in defaults.items():
        if key not in m:
            raise UserError(f"config key model.{key} is missing: {takes}")
        _require_kind(f"model.{key}", m[key], default)


def _require_finite_floats(config: ml_collections.ConfigDict) -> None:
    """Every float in the config (alone or in a tuple) is finite: inf/nan never make sense."""
    for key, value in leaves(config):
        values = value if isinstance(value, tuple | list) else (value,)
        finite = all(math.isfinite(v) for v in values if isinstance(v, float))
        _require(finite, key, "a finite number", value)


def _check_run_name_and_seed(config: ml_collections.ConfigDict) -> None:
    _require(bool(config.experiment_name), "experiment_name", "a non-empty name", config.experiment_name)
    _require("/" not in config.experiment_name, "experiment_name", "no '/'", config.experiment_name)
    _require(0 <= config.seed < 2**31, "seed", "an integer in [0, 2**31)", config.seed)


def _check_data_reading(d: ml_collections.ConfigDict) -> None:
    """Batches, workers and placement; which data set, and for digits which digits."""
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


def _check_classes_for_dataset(d: ml_collections.ConfigDict, m: ml_collections.ConfigDict) -> None:
    """model.num_classes as the data set has them: one per kept digit; one logit or two for PCAM."""
    if "num_classes" not in m:  # an unknown model.name, named in its turn (_check_model)
        return
    if d.dataset == "digits":
        _require(m.num_classes == len(d.digits), "model.num_classes", f"{len(d.digits)} (one per digit)", m.num_classes)
    else:
        _require(m.num_classes in (1, 2), "model.num_classes", "1 (one logit) or 2 for PCAM", m.num_classes)


def _check_data_source_and_images(d: ml_collections.ConfigDict) -> None:
    """The built-in sample's version, stain augmentation and normalization."""
    _require(d.sample_version in SAMPLE_VERSIONS, "data.sample_version", f"one of {SAMPLE_VERSIONS}", d.sample_version)
    _require(
        d.sample_version == 1 or d.dataset == "pcam",
        "data.sample_version",
        "1 for the digits task (it picks a version of the built-in PCAM sample)",
        d.sample_version,
    )
    _require(
        d.sample_version == 1 or not d.dir,
        "data.sample_version",
        f"1 when data.dir is set (it picks a version of the built-in sample; data.dir is {d.dir!r})",
        d.sample_version,
    )
    _require(0 <= d.stain_augment <= 1, "data.stain_augment", "a strength in [0, 1] (0 = off)", d.stain_augment)
    _require(d.normalization in NORMALIZATIONS, "data.normalization", f"one of {NORMALIZATIONS}", d.normalization)


# What a model key's value must be, by key name, whichever model takes it; a model's own
# config_problem (jaxpcam/models/__init__.py) checks the rest.
MODEL_VALUES = {
    "hidden_units": (_positive_ints, "a non-empty tuple of positive integers, e.g. '(512, 256)'"),
    "dropout_rate": (lambda v: 0.0 <= v < 1.0, "a value in [0, 1)"),
    "num_classes": (lambda v: v >= 1, "1 (binary, one logit) or >= 2"),
    "conv_features": (_positive_ints, "a non-empty tuple of positive integers, e.g. '(32, 64)'"),
    "resnet_blocks": (_positive_ints, "a non-empty tuple of positive integers, e.g. '(2, 2, 2, 2)'"),
}


def _check_model(m: ml_collections.ConfigDict) -> None:
    """A model there is, and values its keys can take (in the order its class declares them)."""
    _require(m.name in model_names(), "model.name", f"one of {model_names()}", m.name)
    for key in model_defaults(m.name):
        valid, expected = MODEL_VALUES.get(key, (lambda v: True, ""))
        _require(valid(m[key]), f"model.{key}", expected, m[key])
    problem = config_problem(m)
    if problem:
        key, expected = problem
        _require(False, f"model.{key}", expected, m[key])


def _check_updates(t: ml_collections.ConfigDict) -> None:
    """How many epochs, and what each optimizer update does."""
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


def _check_schedule(t: ml_collections.ConfigDict) -> None:
    """The learning-rate schedule and its warmup."""
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


def _check_run_control(t: ml_collections.ConfigDict) -> None:
    """Early stopping, logging, and the numerics of the steps."""
    _require(
        _is_int(t.early_stopping_patience) and 0 <= t.early_stopping_patience <= 10**6,
        "training.early_stopping_patience",
        "an integer >= 0 (epochs without improvement; 0 = off)",
        t.early_stopping_patience,
    )
    _require(t.log_every_steps >= 1, "training.log_every_steps", "an integer >= 1", t.log_every_steps)
    k = t.steps_per_dispatch
    _require(1 <= k <= 1024, "training.steps_per_dispatch", "an integer in [1, 1024]", k)
    _require(t.dtype in DTYPES, "training.dtype", f"one of {DTYPES}", t.dtype)
    _require(t.member_layout in MEMBER_LAYOUTS, "training.member_layout", f"one of {MEMBER_LAYOUTS}", t.member_layout)
    _require(t.nan_policy in NAN_POLICIES, "training.nan_policy", f"one of {NAN_POLICIES}", t.nan_policy)
    _require(
        t.matmul_precision in MATMUL_PRECISIONS,
        "training.matmul_precision",
        f"one of {MATMUL_PRECISIONS}",
        t.matmul_precision,
    )


def _check_checkpoint(config: ml_collections.ConfigDict) -> None:
    """Retention, and a best_metric that training logs for this task."""
    c = config.checkpoint
    _require(c.keep >= 1, "checkpoint.keep", "an integer >= 1", c.keep)
    _require(c.every_steps >= 0, "checkpoint.every_steps", "an integer >= 0 (0 = epoch ends only)", c.every_steps)
    _require(c.best_mode in BEST_MODES, "checkpoint.best_mode", f"one of {BEST_MODES}", c.best_mode)
    allowed = task_for(config).metric_names
    _require(
        c.best_metric in allowed,
        "checkpoint.best_metric",
        f"one of the metrics training logs for this task: {', '.join(allowed)}",
        c.best_metric,
    )


def validate(config: ml_collections.ConfigDict) -> None:
    """Raises UserError naming the first key whose value cannot work."""
    check_config(config, base_config())
