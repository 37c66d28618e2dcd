"""Epoch-level learning-rate schedules with PyTorch's exact decisions, as pure host functions.

The state is plain Python floats (float64, as torch's schedulers compute), saved as JSON in
each checkpoint; the jitted step receives the resulting rate through ``inject_hyperparams``.

- ``step``: torch ``StepLR``: after every ``step_size``-th epoch, ``lr *= gamma``.
- ``plateau``: torch ``ReduceLROnPlateau(mode='min', threshold_mode='rel')``: reduces when the
  number of bad epochs *exceeds* ``patience`` (optax's ``reduce_on_plateau`` reduces one epoch
  earlier, at ``== patience``), honours cooldown, ``min_lr`` and torch's ``eps=1e-8``.
"""

import dataclasses
import math

import ml_collections

_TORCH_EPS = 1e-8


@dataclasses.dataclass(frozen=True)
class ScheduleState:
    lr: float
    epochs_done: int = 0
    best: float = math.inf
    num_bad_epochs: int = 0
    cooldown_counter: int = 0

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "best": None if math.isinf(self.best) else self.best}

    @classmethod
    def from_dict(cls, d: dict) -> "ScheduleState":
        return cls(**{**d, "best": math.inf if d["best"] is None else d["best"]})


def init_schedule(t: ml_collections.ConfigDict) -> ScheduleState:
    return ScheduleState(lr=float(t.learning_rate))


def _plateau(s: ScheduleState, t: ml_collections.ConfigDict, val_loss: float) -> ScheduleState:
    best, bad = s.best, s.num_bad_epochs
    if val_loss < best * (1.0 - t.plateau_threshold):  # NaN compares False: a bad epoch
        best, bad = val_loss, 0
    else:
        bad += 1
    cooldown = s.cooldown_counter
    if cooldown > 0:
        cooldown, bad = cooldown - 1, 0
    lr = s.lr
    if bad > t.plateau_patience:
        new_lr = max(lr * t.plateau_factor, t.min_lr)
        if lr - new_lr > _TORCH_EPS:
            lr = new_lr
        cooldown, bad = t.plateau_cooldown, 0
    return ScheduleState(lr, s.epochs_done + 1, best, bad, cooldown)


def update_schedule(s: ScheduleState, t: ml_collections.ConfigDict, val_loss: float) -> ScheduleState:
    """The state after one more finished epoch whose validation loss was ``val_loss``."""
    if t.scheduler == "plateau":
        return _plateau(s, t, float(val_loss))
    epochs_done = s.epochs_done + 1
    lr = s.lr * t.gamma if t.scheduler == "step" and epochs_done % t.step_size == 0 else s.lr
    return dataclasses.replace(s, lr=lr, epochs_done=epochs_done)
