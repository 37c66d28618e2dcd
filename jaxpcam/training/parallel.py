"""Data parallelism: one ``data`` mesh axis over every device of every process.

Parameters and optimizer state are replicated; each global batch of ``data.batch_size`` images
is split along the ``data`` axis, so every device computes the gradient of its rows and XLA
all-reduces them inside the jitted step. The global batch, and therefore the loss, the gradient
and every metric, is the same for 1 device, N devices or N processes: only the order of the
floating-point sums changes (results agree to ~1e-6 relative, not bitwise).

Each process reads only its own rows of each global batch (a contiguous block, in device
order), so no process reads the whole batch and the stream itself does not depend on the
process count.
"""

import dataclasses
import os

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxpcam.core.errors import UserError

DATA_AXIS = "data"


def initialize_processes(coordinator_address: str | None, num_processes: int | None, process_id: int | None) -> bool:
    """Joins a multi-process job, before any JAX computation. Returns True if it did.

    Explicit arguments (e.g. two processes on localhost) win; otherwise a SLURM step with more
    than one task (``srun`` sets SLURM_NTASKS, SLURM_PROCID, SLURM_STEP_NODELIST) is detected by
    ``jax.distributed.initialize()`` itself. A single task never initializes anything.
    """
    if coordinator_address or num_processes or process_id is not None:
        if not (coordinator_address and num_processes and process_id is not None):
            raise UserError("--coordinator_address, --num_processes and --process_id go together")
        if not 0 <= process_id < num_processes:
            raise UserError(f"--process_id {process_id}: expected 0 <= process_id < --num_processes {num_processes}")
        jax.distributed.initialize(coordinator_address, num_processes, process_id)
        return True
    if int(os.environ.get("SLURM_NTASKS", "1")) > 1 and "SLURM_STEP_NODELIST" in os.environ:
        jax.distributed.initialize()
        return True
    return False


def is_primary() -> bool:
    """Process 0 writes logs, metrics and TensorBoard files; every process writes checkpoints
    collectively. Does not start a backend when no multi-process job was joined."""
    return not jax.distributed.is_initialized() or jax.process_index() == 0


@dataclasses.dataclass(frozen=True)
class DataParallel:
    mesh: jax.sharding.Mesh

    @classmethod
    def over_all_devices(cls) -> "DataParallel":
        # Auto axes: the compiler propagates the batch sharding through the model, so no model
        # needs to know it is data parallel.
        mesh = jax.make_mesh((jax.device_count(),), (DATA_AXIS,), axis_types=(jax.sharding.AxisType.Auto,))
        return cls(mesh)

    @property
    def num_devices(self) -> int:
        return self.mesh.devices.size

    @property
    def replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, P())

    @property
    def batch_sharding(self) -> NamedSharding:
        return NamedSharding(self.mesh, P(DATA_AXIS))

    def check_batch_size(self, batch_size: int) -> None:
        """A global batch must split evenly: padding or dropping rows would change what a step
        trains on depending on the device count, so it is an error instead."""
        if batch_size % self.num_devices:
            n = self.num_devices
            lower = batch_size - batch_size % n
            raise UserError(
                f"config key data.batch_size: {batch_size} does not split evenly over {n} devices; "
                f"use a multiple of {n}, e.g. {max(lower, n)} or {lower + n}"
            )

    def eval_batch_size(self, requested: int) -> int:
        """Evaluation batches are padded and masked anyway, so round up instead of failing."""
        return -(-requested // self.num_devices) * self.num_devices

    def local_rows(self, batch_size: int) -> slice:
        """The rows of a global batch that this process's devices hold (contiguous in mesh order)."""
        per_device = batch_size // self.num_devices
        mine = [i for i, d in enumerate(self.mesh.devices.flat) if d.process_index == jax.process_index()]
        if mine != list(range(mine[0], mine[-1] + 1)):
            raise RuntimeError(f"this process's devices are not contiguous in the mesh: positions {mine}")
        return slice(mine[0] * per_device, (mine[-1] + 1) * per_device)

    def replicate(self, tree):
        """A full copy on every device. Goes through host values: a multi-process job cannot
        device_put an array committed to one local device onto the global mesh."""

        def put(x):
            if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
                return jax.random.wrap_key_data(put(jax.random.key_data(x)), impl=jax.random.key_impl(x))
            return jax.device_put(np.asarray(jax.device_get(x)), self.replicated)

        return jax.tree.map(put, tree)

    def global_batch(self, local_batch: dict) -> dict:
        """This process's rows (numpy) -> one global array per key, sharded along ``data``."""
        return jax.make_array_from_process_local_data(self.batch_sharding, local_batch)

    def abstract_batch(self, batch_size: int, image_shape, indices_only: bool = False, transforms: tuple = ()) -> dict:
        """Shapes, dtypes and shardings of a global training batch, for ahead-of-time compiling:
        images (data.placement=host) or, with ``indices_only``, pipeline.BatchIndices carrying
        the per-image parameters of the augmentations ``transforms``."""
        s = self.batch_sharding
        row = lambda dtype, shape=(): jax.ShapeDtypeStruct((batch_size, *shape), dtype, sharding=s)  # noqa: E731
        if indices_only:
            drawn = {t.name: row(t.param_dtype, t.param_shape) for t in transforms}
            return {"index": row(np.int32), "label": row(np.int32), "mask": row(np.bool_), "transforms": drawn}
        image = jax.ShapeDtypeStruct((batch_size, *image_shape), np.uint8, sharding=s)
        return {"image": image, "label": row(np.int32), "mask": row(np.bool_)}


def to_host(tree):
    """Global (possibly multi-process) arrays -> numpy on every process."""
    if jax.process_count() == 1:
        return jax.device_get(tree)
    return multihost_utils.process_allgather(tree, tiled=True)


def any_process(flag: bool) -> bool:
    """True on every process when ``flag`` is True on any (e.g. a SIGTERM that reached one)."""
    if jax.process_count() == 1:
        return flag
    return bool(np.any(multihost_utils.process_allgather(np.asarray([flag]), tiled=True)))


def agree_on_stop(signal_number: int, step_seconds: float) -> tuple[int, float]:
    """(the signal any process was asked to stop by, 0 if none; the slowest process's seconds
    per step), the same on every process: one tiny all-gather."""
    if jax.process_count() == 1:
        return signal_number, step_seconds
    mine = np.asarray([float(signal_number), step_seconds])
    gathered = np.asarray(multihost_utils.process_allgather(mine, tiled=True)).reshape(-1, 2)
    return int(gathered[:, 0].max()), float(gathered[:, 1].max())


def barrier(name: str) -> None:
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)
