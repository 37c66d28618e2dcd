"""``training.steps_per_dispatch`` K: several train steps in one jitted call.

Small models spend more time launching a step than computing it (dispatch, the host loop, one
transfer per batch). A chunk of k <= K steps runs as one program: the k batches go over in one
transfer, the steps run one after another inside the program, and their metrics come back
stacked, one row per step, so TensorBoard still gets every step's ``train/loss``,
``train/grad_norm`` and ``train/lr``. The loop cuts a chunk at every point where it acts
(a metrics sync, a checkpoint, an epoch end, the end of the run), so those land on the same
steps as with K = 1; a stop request (SIGTERM) is read after each chunk, so the run stops at the
chunk's end, at most K - 1 steps later than with K = 1.

The steps are unrolled (a Python loop, k is static), not a ``lax.scan``: XLA:CPU runs
convolutions inside a while loop on a slow path (60x slower; see training/accumulation.py). An
``optimization_barrier`` between steps keeps each step's program as the single step's (no
fusion across steps), so the numbers are those of K = 1.
"""

import jax
import jax.numpy as jnp


def chunk_of(one_step, k: int):
    """``k`` calls of ``one_step(state, batch, *rest) -> (state, metrics)`` as one function of
    (state, batches with a leading step axis, *rest) -> (state, metrics stacked per step)."""

    def chunk(state, batches, *rest):
        rows = []
        for j in range(k):
            batch = jax.tree.map(lambda x, j=j: x[j], batches)
            state, batch = jax.lax.optimization_barrier((state, batch))
            state, metrics = one_step(state, batch, *rest)
            rows.append(metrics)
        return state, jax.tree.map(lambda *xs: jnp.stack(xs), *rows)

    return chunk
