"""The train state pytree, the optimizer, and the PRNG streams, all built from the config."""

from collections.abc import Callable
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxpcam.data.normalization import Normalization


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: Any
    opt_state: optax.OptState
    normalization: Normalization  # in the state so a checkpoint carries the numbers it used
    apply_fn: Callable = flax.struct.field(pytree_node=False)
    tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)

    @property
    def eval_params(self):
        """The weights validation (so the best checkpoint), evaluate and predict use."""
        return self.params

    @property
    def learning_rate(self) -> jax.Array:
        return self.opt_state.hyperparams["learning_rate"]

    def with_learning_rate(self, lr: float) -> "TrainState":
        hyperparams = {**self.opt_state.hyperparams, "learning_rate": jnp.asarray(lr, jnp.float32)}
        return self.replace(opt_state=self.opt_state._replace(hyperparams=hyperparams))


@flax.struct.dataclass
class EmaTrainState(TrainState):
    """A TrainState with ``training.ema_decay`` > 0: it also carries a moving average of the
    params (training/ema.py), which validation, evaluate and predict use. A subclass, not a field
    that is None when off: Orbax records even a None field, and a run without EMA must keep the
    exact state layout of the checkpoints written before EMA existed, so they still restore."""

    ema_params: Any
    ema_decay: float = flax.struct.field(pytree_node=False)

    @property
    def eval_params(self):
        return self.ema_params


def make_optimizer(t: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """Adam / AdamW / SGD with PyTorch's semantics; the learning rate is an injected hyperparameter.

    ``weight_decay`` for adam and sgd is L2 added to the gradient (torch.optim.Adam/SGD);
    for adamw it is decoupled (torch.optim.AdamW). Clipping, if on, comes first, as
    ``clip_grad_norm_`` before ``optimizer.step()`` does.
    """

    def build(learning_rate):
        parts = []
        if t.grad_clip_norm > 0:
            parts.append(optax.clip_by_global_norm(t.grad_clip_norm))
        if t.weight_decay > 0 and t.optimizer in ("adam", "sgd"):
            parts.append(optax.add_decayed_weights(t.weight_decay))
        if t.optimizer in ("adam", "adamw"):
            parts.append(optax.scale_by_adam(b1=0.9, b2=0.999, eps=1e-8))
        if t.optimizer == "adamw" and t.weight_decay > 0:
            parts.append(optax.add_decayed_weights(t.weight_decay))
        if t.optimizer == "sgd" and t.momentum > 0:
            parts.append(optax.trace(decay=t.momentum))
        parts.append(optax.scale_by_learning_rate(learning_rate))
        return optax.chain(*parts)

    return optax.inject_hyperparams(build, hyperparam_dtype=jnp.float32)(learning_rate=t.learning_rate)


def create_train_state(
    key: jax.Array,
    model,
    tx: optax.GradientTransformation,
    normalization: Normalization,
    image_shape: tuple[int, ...] = (96, 96, 3),
    ema_decay: float = 0.0,
) -> TrainState:
    """``ema_decay`` > 0 starts the EMA at the initial params (a copy: donation needs own buffers)."""
    dummy = jnp.zeros((1, *image_shape), jnp.float32)
    params = model.init({"params": key}, dummy, train=False)["params"]
    state = TrainState(
        step=jnp.asarray(0, jnp.int32),
        params=params,
        opt_state=tx.init(params),
        normalization=normalization,
        apply_fn=model.apply,
        tx=tx,
    )
    if ema_decay > 0:
        ema = jax.tree.map(jnp.copy, params)
        return EmaTrainState(**vars(state), ema_params=ema, ema_decay=float(ema_decay))
    return state


def count_params(params) -> int:
    return int(sum(np.prod(p.shape) for p in jax.tree.leaves(params)))
