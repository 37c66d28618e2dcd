"""Will it fit? Estimated before anything is allocated or compiled, and the one place that reads
how much memory is free.

A single run (``needed_bytes``, ``refusal``): per device, the train state (parameters, optimizer
state, EMA; shaped with ``jax.eval_shape``), one more copy of the parameters for the gradients,
and the largest batch as images and as the float32 input the model takes (training's, or
validation's, which never exceeds the valid split). That is a lower bound (activations come on
top): a run refused here could never have fitted, and one that passes may still run out, which
is then one line too (core/exits.py).

Members trained together (``members_that_fit``): each adds its train state, a gradient, its
batch and its activations, counted from the shapes of every intermediate output of the model
(Flax's ``capture_intermediates`` under ``jax.eval_shape``, nothing computed), twice (kept for
the backward pass, and their gradients) per image of a micro-batch. The stacked state is built
from the members' own copies, so it is counted twice. Members that do not fit train in groups,
one group after another; the log says so. That estimate is rough on purpose (XLA may fuse
activations away, or keep more); ``MEMBERS_SHARE`` leaves room for the difference.
"""

import math
import re
from pathlib import Path

import jax
import jax.numpy as jnp

from jaxpcam.core.errors import UserError
from jaxpcam.core.reporting import log

GIB = 2**30
MEMBERS_SHARE = 0.8  # the share of the free device memory that the members' estimate may take


def tree_bytes(tree) -> int:
    return int(
        sum(math.prod(x.shape) * jnp.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree) if hasattr(x, "shape"))
    )


# What is free.


def _cgroup_room() -> int | None:
    """What this process's cgroup (v2) still allows, if it sets a limit."""
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text())
    except (OSError, ValueError):
        return None
    return int(limit) - used if limit.isdigit() else None


def _host_available() -> int | None:
    try:
        match = re.search(r"^MemAvailable:\s+(\d+) kB", Path("/proc/meminfo").read_text(), re.MULTILINE)
    except OSError:
        match = None
    rooms = [r for r in (int(match.group(1)) * 1024 if match else None, _cgroup_room()) if r is not None]
    return min(rooms) if rooms else None


def available_bytes(device) -> tuple[int | None, str]:
    """(bytes a run may still allocate on ``device``, where they are); None when unknown: an
    accelerator's allocator limit less what is in use, or on the CPU the RAM still available."""
    try:
        stats = device.memory_stats() or {}
    except Exception:  # not every backend has them
        stats = {}
    if stats.get("bytes_limit"):
        return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0)), f"{device.platform} device memory"
    if device.platform == "cpu":
        return _host_available(), "host memory (RAM available)"
    return None, f"{device.platform} device memory"


def _sharing(devices: list) -> int:
    """How many devices share each one's memory: CPU devices share the host's RAM."""
    return len(devices) if all(d.platform == "cpu" for d in devices) else 1


def free_device_memory(devices) -> int | None:
    """The least free memory of ``devices``; on the CPU, where devices share RAM, the available
    RAM divided among them. None when any is unknown."""
    devices = list(devices)
    free = [available_bytes(d)[0] for d in devices]
    if any(f is None for f in free):
        return None
    return min(free) // _sharing(devices)


# A single run.


def needed_bytes(abstract_state, step_images: int, micro_batch: int, eval_batch: int, image_shape) -> dict[str, int]:
    """The estimate's parts, per device, in bytes: a step's images (uint8) and the float32 input
    of one (micro-)batch, or an evaluation batch as both."""
    image = math.prod(image_shape)
    return {
        "train state": tree_bytes(abstract_state),
        "gradients": tree_bytes(abstract_state.params),
        "largest batch": max(step_images + 4 * micro_batch, 5 * eval_batch) * image,
    }


def refusal(needed: dict[str, int], devices) -> UserError | None:
    """One line with the numbers, before any allocation, when the estimate exceeds what is free
    per device (``free_device_memory``: on the CPU the RAM, shared by the devices)."""
    devices = list(devices)
    available, total = free_device_memory(devices), sum(needed.values())
    if available is None or total <= available:
        return None
    where = available_bytes(devices[0])[1]
    shared = f", shared by {_sharing(devices)} devices" if _sharing(devices) > 1 else ""
    parts = ", ".join(f"{name} {size / GIB:.2f} GiB" for name, size in needed.items())
    return UserError(
        f"this run needs at least {total / GIB:.2f} GiB per device ({parts}; activations come on top) but "
        f"{available / GIB:.2f} GiB of {where}{shared} is available per device: lower data.batch_size or "
        "data.eval_batch_size, or choose a smaller model (model.hidden_units, ...)"
    )


# Members trained together.


def activation_bytes_per_image(run) -> int:
    """The bytes of every intermediate output of the model for one image (float32 input)."""
    state = run.state
    image = jax.ShapeDtypeStruct((1, *run.image_shape), jnp.float32)

    def forward(params, x):
        return state.apply_fn({"params": params}, x, train=False, capture_intermediates=True, mutable=["intermediates"])

    _, intermediates = jax.eval_shape(forward, state.params, image)
    return tree_bytes(intermediates) + math.prod(run.image_shape) * 4


def member_bytes(run) -> int:
    """The device memory one more member like ``run`` (a training.setup.Run) needs."""
    state, grads = tree_bytes(run.state), tree_bytes(run.state.params)
    micro_batch = run.config.data.batch_size
    batch = run.batch_size * math.prod(run.image_shape) * (1 + 4)  # uint8 in, float32 normalized
    return 2 * state + grads + batch + 2 * micro_batch * activation_bytes_per_image(run)


def members_that_fit(run, wanted: int) -> int:
    """How many of ``wanted`` members (like ``run``, already on the device) train together;
    logs the estimate, and the split when not all fit."""
    free = free_device_memory(jax.local_devices())
    need = member_bytes(run)
    gib = lambda n: f"{n / GIB:.2f} GiB"  # noqa: E731
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
