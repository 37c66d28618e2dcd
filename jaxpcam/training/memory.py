"""How many members fit the device together, estimated before anything is compiled.

Each member adds its train state (parameters, optimizer state, EMA), a gradient, its batch and
its activations. The state and gradient are counted from the first member's arrays; the
activations from the shapes of every intermediate output of the model (``jax.eval_shape`` with
Flax's ``capture_intermediates``, nothing computed), twice (kept for the backward pass, and
their gradients) per image of a micro-batch. The stacked state is built from the members' own
copies, so it is counted twice. Members that do not fit train in groups, one group after
another, each group by its own compiled step; the log says so. The estimate is rough on purpose
(XLA may fuse activations away, or keep more); ``MEMBERS_SHARE`` leaves room for the difference.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxpcam.core.reporting import log
from jaxpcam.training.placement import free_device_memory
from jaxpcam.training.setup import Run

MEMBERS_SHARE = 0.8  # the share of the free device memory that the members' estimate may take


def tree_bytes(tree) -> int:
    return int(sum(np.prod(x.shape) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree) if hasattr(x, "shape")))


def activation_bytes_per_image(run: Run) -> int:
    """The bytes of every intermediate output of the model for one image (float32 input)."""
    state = run.state
    image = jax.ShapeDtypeStruct((1, *run.image_shape), jnp.float32)

    def forward(params, x):
        return state.apply_fn({"params": params}, x, train=False, capture_intermediates=True, mutable=["intermediates"])

    _, intermediates = jax.eval_shape(forward, state.params, image)
    return tree_bytes(intermediates) + int(np.prod(run.image_shape)) * 4


def member_bytes(run: Run) -> int:
    """The device memory one more member needs (an estimate, see the module's docstring)."""
    state, grads = tree_bytes(run.state), tree_bytes(run.state.params)
    micro_batch = run.config.data.batch_size
    batch = run.batch_size * int(np.prod(run.image_shape)) * (1 + 4)  # uint8 in, float32 normalized
    return 2 * state + grads + batch + 2 * micro_batch * activation_bytes_per_image(run)


def members_that_fit(run: Run, wanted: int) -> int:
    """How many of ``wanted`` members (like ``run``, already on the device) train together;
    logs the estimate, and the split when not all fit."""
    free = free_device_memory(jax.local_devices())
    need = member_bytes(run)
    gib = lambda n: f"{n / 2**30:.2f} GiB"  # noqa: E731
    if free is None:
        log(f"{wanted} members need about {gib(wanted * need)} (free device memory unknown): all train together")
        return wanted
    room = MEMBERS_SHARE * (free + tree_bytes(run.state))  # the first member's state is in use already
    fit = max(1, min(wanted, math.floor(room / need)))
    sizes = f"about {gib(need)} each, {gib(free)} free"
    if fit < wanted:
        groups = math.ceil(wanted / fit)
        log(f"{wanted} members do not fit the device together ({sizes}): training them in {groups} groups of "
            f"at most {fit}, one group after another")  # fmt: skip
    else:
        log(f"{wanted} members train together ({sizes})")
    return fit
