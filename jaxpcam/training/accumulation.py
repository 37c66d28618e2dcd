"""training.grad_accum_steps: one optimizer update from the mean gradient of k micro-batches.

``data.batch_size`` is the micro-batch b (what one forward/backward pass holds in memory, as
PyTorch users size it); an update sees the effective batch k * b. The input stream hands the
step one batch of k * b records, exactly the batch a run with ``data.batch_size = k * b``
would read, and the jitted step splits it: micro-batch j is rows j, j + k, j + 2k, ... (each
micro-batch then spans every device's shard, so no data moves between devices). A
``lax.scan`` runs the micro-batches one after another, so activations are held for b images
only; it sums their gradients and divides by k, as ``loss / k`` before each ``backward()`` in
PyTorch does. The accumulator lives inside the step, never in the train state: a step, a
checkpoint and a resume always fall on an optimizer update, and resume stays bit-exact.

Micro-batch j uses the dropout key ``fold_in(step_key, j)``; the loss function's auxiliary
output (the train-accuracy count of correct predictions) is summed over the micro-batches. With
k = 1 nothing is split and the step is the one it always was (same key, same arithmetic).
"""

import jax
import jax.numpy as jnp


def _micro_batches(x: jax.Array, k: int) -> jax.Array:
    """(k*b, ...) -> (k, b, ...), micro-batch j holding rows j, j+k, j+2k, ..."""
    return jnp.swapaxes(x.reshape(x.shape[0] // k, k, *x.shape[1:]), 0, 1)


def value_and_grad(loss_fn, params, batch: dict, step_key: jax.Array, accum_steps: int = 1):
    """((mean loss, summed aux), mean gradient) of ``loss_fn(params, batch, key) -> (loss, aux)``
    over ``batch``, taken in ``accum_steps`` micro-batches; ``aux`` must add up (a count)."""
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    if accum_steps == 1:
        return grad_fn(params, batch, step_key)
    micro_batches = {name: _micro_batches(x, accum_steps) for name, x in batch.items()}

    def micro_step(carry, micro):
        (loss_sum, aux_sum, grad_sum), (batch_j, j) = carry, micro
        (loss, aux), grads = grad_fn(params, batch_j, jax.random.fold_in(step_key, j))
        return (loss_sum + loss, jax.tree.map(jnp.add, aux_sum, aux), jax.tree.map(jnp.add, grad_sum, grads)), None

    first_aux = jax.eval_shape(lambda: loss_fn(params, jax.tree.map(lambda x: x[0], micro_batches), step_key)[1])
    zeros = (jnp.zeros((), jnp.float32), jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), first_aux))
    zeros += (jax.tree.map(jnp.zeros_like, params),)
    (loss_sum, aux_sum, grad_sum), _ = jax.lax.scan(micro_step, zeros, (micro_batches, jnp.arange(accum_steps)))
    return (loss_sum / accum_steps, aux_sum), jax.tree.map(lambda g: g / accum_steps, grad_sum)
