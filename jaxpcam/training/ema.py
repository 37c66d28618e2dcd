"""training.ema_decay: an exponential moving average of the parameters, for evaluation.

After each optimizer update (one train step; with gradient accumulation one step is k
micro-batches), ``ema = d * ema + (1 - d) * params`` with

    d = min(ema_decay, (1 + n) / (10 + n)),   n = optimizer updates before this one

The EMA starts at the initial parameters (a usable model from step 0, so no bias correction
is needed: optax.ema's debiasing exists for an average started at zero), and the warmup is
TensorFlow's ``ExponentialMovingAverage(num_updates=...)`` rule: early on, when the parameters
move fast, the average follows them closely (d = 0.1, 0.18, 0.25, ... at n = 0, 1, 2), and it
reaches ``ema_decay`` after about ``ema_decay / (1 - ema_decay)`` updates (999 for 0.999, 9,999
for 0.9999). Without it a 0.9999 average over a few hundred updates would still be mostly the
random initialisation. A step skipped by ``training.nan_policy=skip`` leaves the EMA unchanged.
"""

import jax
import jax.numpy as jnp


def decay_at(ema_decay: float, updates_before: jax.Array) -> jax.Array:
    """The decay applied at the update that follows ``updates_before`` updates (float32)."""
    n = jnp.asarray(updates_before, jnp.float32)
    return jnp.minimum(jnp.float32(ema_decay), (1.0 + n) / (10.0 + n))


def update(ema_params, params, ema_decay: float, updates_before: jax.Array):
    d = decay_at(ema_decay, updates_before)
    return jax.tree.map(lambda e, p: d * e + (1.0 - d) * p, ema_params, params)
