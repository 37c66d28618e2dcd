"""Learning-rate schedules: epoch-level ones with PyTorch's exact decisions, as pure host
functions, and a per-step part (warmup, cosine) evaluated inside the jitted step.

The epoch-level state is plain Python floats (float64, as torch's schedulers compute), saved as
JSON in each checkpoint; the jitted step receives the resulting rate through
``inject_hyperparams`` (the optimizer state's ``learning_rate``, "the epoch rate").

- ``step``: torch ``StepLR``: after every ``step_size``-th epoch, ``lr *= gamma``.
- ``plateau``: torch ``ReduceLROnPlateau(mode='min', threshold_mode='rel')``: reduces when the
  number of bad epochs *exceeds* ``patience`` (optax's ``reduce_on_plateau`` reduces one epoch
  earlier, at ``== patience``), honours cooldown, ``min_lr`` and torch's ``eps=1e-8``.
- ``cosine``: per step (``StepRate``): after the warmup, half a cosine from the epoch rate (which
  stays ``learning_rate``) down to ``min_lr`` at the run's last step (epochs * steps_per_epoch).
- ``warmup_steps`` > 0, with any scheduler: the rate of update ``u`` (1-based) is the epoch rate
  times ``u / warmup_steps`` while ``u < warmup_steps``: from 0 (before the first update) up, so
  the first update already uses ``lr / warmup_steps``, none is wasted at 0 (unlike
  ``LambdaLR(lambda s: s / warmup)``), and update ``warmup_steps`` uses the full rate.

``StepRate`` is a function of the global step alone (the state's own counter), so a resumed run
uses exactly the rates an uninterrupted one does; the state keeps the epoch rate, and the step
reports the rate it used.
"""

import dataclasses
import math

import jax.numpy as jnp
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


@dataclasses.dataclass(frozen=True)
class StepRate:
    """The per-step part of the rate; hashable, so the jitted step takes it as a static argument."""

    cosine: bool
    warmup_steps: int
    total_steps: int  # the run's length: training.epochs * steps_per_epoch
    min_lr: float

    def __call__(self, step, epoch_lr):
        """The rate of the update that takes the state from ``step`` to ``step + 1`` (float32)."""
        u = (jnp.asarray(step) + 1).astype(jnp.float32)  # updates done once this one is
        epoch_lr = jnp.asarray(epoch_lr, jnp.float32)
        rate = epoch_lr
        if self.cosine:
            span = max(self.total_steps - self.warmup_steps, 1)
            p = jnp.clip((u - self.warmup_steps) / span, 0.0, 1.0)
            low = jnp.float32(self.min_lr)
            rate = low + (epoch_lr - low) * (0.5 * (1.0 + jnp.cos(jnp.float32(math.pi) * p)))
        if self.warmup_steps > 0:
            rate = jnp.where(u < self.warmup_steps, epoch_lr * (u / self.warmup_steps), rate)
        return rate


def step_rate(t: ml_collections.ConfigDict, steps_per_epoch: int) -> StepRate | None:
    """The per-step part of the rate for this config; None (the epoch rate alone) by default."""
    warmup = t.warmup_steps
    if t.scheduler != "cosine" and warmup == 0:
        return None
    return StepRate(t.scheduler == "cosine", warmup, t.epochs * steps_per_epoch, float(t.min_lr))
