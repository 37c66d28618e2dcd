"""training.grad_accum_steps: one optimizer update from the mean gradient of k micro-batches.

``data.batch_size`` is the micro-batch b (what one forward/backward pass holds in memory, as
PyTorch users size it); an update sees the effective batch k * b. The input stream hands the
step one batch of k * b records, exactly the batch a run with ``data.batch_size = k * b``
would read, and the jitted step splits it: micro-batch j is rows j, j + k, j + 2k, ... (each
micro-batch then spans every device's shard, so no data moves between devices). The
micro-batches run one after another, so activations are held for b images only; their
gradients are summed and divided by k, as ``loss / k`` before each ``backward()`` in PyTorch
does. The accumulator lives inside the step, never in the train state: a step, a checkpoint and
a resume always fall on an optimizer update, and resume stays bit-exact.

Micro-batch j uses the dropout key ``fold_in(step_key, j)``; the loss function's auxiliary
output (the train-accuracy count of correct predictions) is summed over the micro-batches. With
k = 1 nothing is split and the step is the one it always was (same key, same arithmetic).

Why a Python loop and not ``lax.scan``: k is static, and XLA:CPU (jaxlib 0.12) compiles the
backward convolutions inside a while loop as naive loop code ("wrapped_convolution" fusions in
``benchmarks/profile_step.py --accum-steps 2``) instead of YNNPACK calls: with a rolled scan the
CNN's step was ~40x slower over 2 micro-batches of 16 and ~90x over 2 of 128 (2-core VM). The unrolled
loop is held as sequential as the scan was by ``optimization_barrier``: micro-batch j + 1 starts
(its inputs pass the barrier) only once micro-batch j's sums exist, which keeps one micro-batch's
activations at a time (without it XLA scheduled all k forward passes first), and no fusion
crosses a micro-step, which kept every number of the rolled scan on the MLP. The CNN's gradients
now come from YNNPACK's convolutions, as at k = 1, not from the naive ones: last-bit changes.
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
    first_aux = jax.eval_shape(lambda: loss_fn(params, jax.tree.map(lambda x: x[0], micro_batches), step_key)[1])
    sums = (jnp.zeros((), jnp.float32), jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), first_aux))
    sums += (jax.tree.map(jnp.zeros_like, params),)
    for j in range(accum_steps):
        batch_j = {name: x[j] for name, x in micro_batches.items()}
        params_j, batch_j, (loss_sum, aux_sum, grad_sum) = jax.lax.optimization_barrier((params, batch_j, sums))
        (loss, aux), grads = grad_fn(params_j, batch_j, jax.random.fold_in(step_key, j))
        sums = (loss_sum + loss, jax.tree.map(jnp.add, aux_sum, aux), jax.tree.map(jnp.add, grad_sum, grads))
        sums = jax.lax.optimization_barrier(sums)
    loss_sum, aux_sum, grad_sum = sums
    return (loss_sum / accum_steps, aux_sum), jax.tree.map(lambda g: g / accum_steps, grad_sum)
