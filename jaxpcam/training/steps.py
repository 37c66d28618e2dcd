"""The jitted train and eval steps: pure functions of (state, batch, key)."""

import flax.struct
import jax
import jax.numpy as jnp
import optax

from jaxpcam.core.task import PCAM_ONE_LOGIT, Task
from jaxpcam.data.normalization import normalize
from jaxpcam.training import ema
from jaxpcam.training.accumulation import value_and_grad
from jaxpcam.training.placement import ResidentSplit, gather_batch
from jaxpcam.training.schedules import StepRate
from jaxpcam.training.state import EmaTrainState, TrainState


@flax.struct.dataclass
class StepMetrics:
    loss: jax.Array
    grad_norm: jax.Array  # global L2 norm of the gradient, before any clipping
    lr: jax.Array  # the learning rate this step used
    skipped: jax.Array  # True when a non-finite loss or gradient left the state unchanged
    correct: jax.Array  # how many of the batch's (augmented) images the model, before the update, got right
    count: jax.Array  # how many images the batch holds (its mask)


@flax.struct.dataclass
class EvalOutput:
    loss: jax.Array  # (B,) per-example loss
    probs: jax.Array  # (B,) P(positive) for a binary task, (B, C) otherwise: Task.probabilities


def train_step(
    state: TrainState,
    batch: dict,
    dropout_key: jax.Array,
    resident: ResidentSplit | None = None,
    skip_nonfinite: bool = False,
    task: Task = PCAM_ONE_LOGIT,
    step_rate: StepRate | None = None,
    accum_steps: int = 1,
) -> tuple[TrainState, StepMetrics]:
    """One optimizer update. With ``resident`` (data.placement=device) ``batch`` holds indices
    and the images are gathered from device memory. With ``accum_steps`` k > 1 the batch holds k
    micro-batches whose gradients are averaged (training/accumulation.py). With
    ``skip_nonfinite`` a non-finite loss or gradient norm keeps the old params, optimizer state
    and EMA (the step counter still advances, so data and keys move on). With ``step_rate`` the
    update uses ``step_rate(state.step, epoch rate)`` and the state keeps the epoch rate
    (schedules.py)."""
    if resident is not None:
        batch = gather_batch(resident, batch)
    if "mask" not in batch:
        batch = {**batch, "mask": jnp.ones(batch["label"].shape, bool)}
    step_key = jax.random.fold_in(dropout_key, state.step)

    def loss_fn(params, micro, key):
        images = normalize(micro["image"], state.normalization)
        logits = state.apply_fn({"params": params}, images, train=True, rngs={"dropout": key})
        correct = jnp.sum((task.predictions(logits) == micro["label"]) & micro["mask"], dtype=jnp.int32)
        return task.loss(logits, micro["label"]).mean(), correct

    (loss, correct), grads = value_and_grad(loss_fn, state.params, batch, step_key, accum_steps)
    grad_norm = optax.tree.norm(grads)
    epoch_lr = state.learning_rate
    lr = epoch_lr if step_rate is None else step_rate(state.step, epoch_lr)
    opt_in = state.opt_state if step_rate is None else state.with_learning_rate(lr).opt_state
    updates, opt_state = state.tx.update(grads, opt_in, state.params)
    if step_rate is not None:  # the state keeps the epoch rate: the next step's rate is a function of step alone
        opt_state = opt_state._replace(hyperparams={**opt_state.hyperparams, "learning_rate": epoch_lr})
    params = optax.apply_updates(state.params, updates)
    averages = {}  # training.ema_decay > 0: the EMA follows the updated params
    if isinstance(state, EmaTrainState):
        averages = {"ema_params": ema.update(state.ema_params, params, state.ema_decay, state.step)}
    skipped = jnp.asarray(False)
    if skip_nonfinite:
        skipped = ~(jnp.isfinite(loss) & jnp.isfinite(grad_norm))
        keep_old = lambda new, old: jnp.where(skipped, old, new)  # noqa: E731
        params = jax.tree.map(keep_old, params, state.params)
        opt_state = jax.tree.map(keep_old, opt_state, state.opt_state)
        averages = {name: jax.tree.map(keep_old, new, getattr(state, name)) for name, new in averages.items()}
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state, **averages)
    count = jnp.sum(batch["mask"], dtype=jnp.int32)
    return new_state, StepMetrics(loss, grad_norm, lr, skipped, correct, count)


def eval_step(
    state: TrainState, batch: dict, resident: ResidentSplit | None = None, task: Task = PCAM_ONE_LOGIT
) -> EvalOutput:
    if resident is not None:
        batch = gather_batch(resident, batch)
    images = normalize(batch["image"], state.normalization)
    logits = state.apply_fn({"params": state.eval_params}, images, train=False)
    return EvalOutput(task.loss(logits, batch["label"]), task.probabilities(logits))


jit_train_step = jax.jit(
    train_step, donate_argnums=0, static_argnames=("skip_nonfinite", "task", "step_rate", "accum_steps")
)
jit_eval_step = jax.jit(eval_step, static_argnames="task")
