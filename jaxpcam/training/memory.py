"""Will the run fit? Estimated before anything is allocated (the train state is shaped with
``jax.eval_shape``): per device, the train state (parameters, optimizer state, EMA), one more
copy of the parameters for the gradients, and the largest batch as images and as the float32
input the model takes (training's, or validation's, which never exceeds the valid split). That
is a lower bound (activations come on top): a run refused here could never have fitted, and one
that passes may still run out, which is then one line too (core/exits.py).
"""

import math
import re
from pathlib import Path

import jax

from jaxpcam.core.errors import UserError

GIB = 2**30


def tree_bytes(tree) -> int:
    return int(sum(math.prod(x.shape) * x.dtype.itemsize for x in jax.tree.leaves(tree) if hasattr(x, "shape")))


def needed_bytes(abstract_state, step_images: int, micro_batch: int, eval_batch: int, image_shape) -> dict[str, int]:
    """The estimate's parts, per device, in bytes: a step's images (uint8) and the float32 input
    of one (micro-)batch, or an evaluation batch as both."""
    image = math.prod(image_shape)
    return {
        "train state": tree_bytes(abstract_state),
        "gradients": tree_bytes(abstract_state.params),
        "largest batch": max(step_images + 4 * micro_batch, 5 * eval_batch) * image,
    }


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
    """(bytes a run may still allocate on ``device``, where they are); None when unknown."""
    try:
        stats = device.memory_stats() or {}
    except Exception:  # not every backend has them
        stats = {}
    if stats.get("bytes_limit"):
        return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0)), f"{device.platform} device memory"
    return _host_available(), "host memory (RAM available)"


def refusal(needed: dict[str, int], device) -> UserError | None:
    """One line with the numbers, before any allocation, when the estimate exceeds what is available."""
    available, where = available_bytes(device)
    total = sum(needed.values())
    if available is None or total <= available:
        return None
    parts = ", ".join(f"{name} {size / GIB:.2f} GiB" for name, size in needed.items())
    return UserError(
        f"this run needs at least {total / GIB:.2f} GiB per device ({parts}; activations come on top) but "
        f"{available / GIB:.2f} GiB of {where} is available: lower data.batch_size or data.eval_batch_size, "
        "or choose a smaller model (model.hidden_units, ...)"
    )
