"""Where the training data lives: ``data.placement`` = host | device | auto.

``host``: the Grain pipeline reads and augments images on the CPU and sends each batch over.
``device``: the train and valid splits are read once into accelerator memory as uint8 (a full
copy on every device, so each device gathers the rows of its shard without communication);
the Grain pipeline still defines the stream, but sends only each batch's indices, dihedral codes,
labels and mask (pipeline.BatchIndices), and the jitted step gathers and augments the images
on the device. Both placements train on the same images in the same order: on the CPU their
metrics are bit-identical.

``auto`` picks ``device`` when both splits take at most half of the free memory of every local
device (the rest is for the model, the optimizer and activations), else ``host``.
"""

import dataclasses
import functools
import time

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from jaxpcam.core.errors import UserError
from jaxpcam.core.reporting import log
from jaxpcam.data import hold_in_memory, stain
from jaxpcam.data.pcam import read_all
from jaxpcam.data.pipeline import apply_dihedral
from jaxpcam.training.parallel import DataParallel, any_process

AUTO_SHARE = 0.5  # auto: the splits may take this share of a device's free memory
DEVICE_SHARE = 0.9  # device: refuse above this share, before anything is copied


@dataclasses.dataclass(frozen=True)
class Placement:
    kind: str  # 'host' or 'device'
    reason: str


def split_bytes(split, image_shape) -> int:
    return len(split) * int(np.prod(image_shape))


def choose_placement(requested: str, needed: int, free: int | None) -> Placement:
    """``needed``: bytes of train + valid on each device; ``free``: the least free memory of any
    local device, None when the backend does not say."""
    gib = lambda n: f"{n / 2**30:.2f} GiB"  # noqa: E731
    if requested == "host":
        return Placement("host", "data.placement=host")
    if free is None:
        if requested == "device":
            return Placement("device", f"data.placement=device ({gib(needed)} per device; free memory unknown)")
        return Placement("host", "data.placement=auto: this backend does not report its free memory")
    sizes = f"train + valid need {gib(needed)} per device, {gib(free)} free"
    if requested == "device":
        if needed > DEVICE_SHARE * free:
            raise UserError(
                f"config key data.placement: 'device' does not fit: {sizes}; use --config.data.placement=host"
            )
        return Placement("device", f"data.placement=device: {sizes}")
    if needed <= AUTO_SHARE * free:
        return Placement("device", f"data.placement=auto chose device: {sizes}")
    return Placement("host", f"data.placement=auto chose host: {sizes} (device needs at most {AUTO_SHARE:.0%})")


def _host_available_bytes() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            fields = dict(line.split(":", 1) for line in f)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None


def free_device_memory(devices) -> int | None:
    """The least free memory of ``devices``: the allocator's limit minus what is in use on a
    GPU; on the CPU, where devices share RAM, the available RAM divided among them."""
    devices = list(devices)
    stats = [d.memory_stats() or {} for d in devices]
    if all("bytes_limit" in s for s in stats):
        return min(int(s["bytes_limit"]) - int(s.get("bytes_in_use", 0)) for s in stats)
    if all(d.platform == "cpu" for d in devices):
        available = _host_available_bytes()
        return None if available is None else available // len(devices)
    return None


@functools.lru_cache(maxsize=4)
def dihedral_table(height: int, width: int) -> np.ndarray:
    """(8, H*W) int32: for each dihedral code, the source pixel of every output pixel. Made by
    the host pipeline's own apply_dihedral, so the device applies exactly the same transforms."""
    pixels = np.arange(height * width, dtype=np.int32).reshape(1, height, width, 1)
    return np.concatenate([apply_dihedral(pixels, np.array([code])).reshape(1, -1) for code in range(8)])


@flax.struct.dataclass
class ResidentSplit:
    """A split's images in device memory, (N, H, W, C) uint8, and whether to augment them."""

    images: jax.Array
    augment: bool = flax.struct.field(pytree_node=False, default=False)


def gather_batch(resident: ResidentSplit, batch: dict) -> dict:
    """BatchIndices on the device -> the batch LoadBatch would have read on the host: gathered,
    flipped/rotated in the same gather, then stain-augmented when the batch carries ``stain``
    parameters (equal to the host's images up to float rounding, at most 1 level)."""
    images, index, mask = resident.images, batch["index"], batch["mask"]
    if resident.augment:
        n, h, w, c = images.shape
        source_pixel = jnp.asarray(dihedral_table(h, w))[batch["code"]]  # (B, H*W)
        picked = images.reshape(n, h * w, c)[index[:, None], source_pixel]  # one gather: row and pixel
        picked = picked.reshape(len(index), h, w, c)
    else:
        picked = images[index]
    if "stain" in batch:
        picked = stain.perturb(picked, batch["stain"], jnp)
    picked = jnp.where(mask[:, None, None, None], picked, jnp.zeros((), picked.dtype))
    return {"image": picked, "label": batch["label"], "mask": mask}


def stain_columns(data_config) -> int:
    """How many stain parameters a device-placement batch carries per image (0: none)."""
    return stain.PARAMETERS if data_config.stain_augment > 0 else 0


def place_split(split, put, augment: bool) -> ResidentSplit:
    """Reads ``split`` once and copies it to the device(s) with ``put`` (e.g. DataParallel.replicate)."""
    return ResidentSplit(put(read_all(split)), augment)


def _agreed(requested: str, needed: int) -> Placement:
    """choose_placement on this process's devices, made the same on every process of a job
    (their batches form one global array): a refusal anywhere stops all, host anywhere wins."""
    try:
        placement, refused = choose_placement(requested, needed, free_device_memory(jax.local_devices())), None
    except UserError as err:
        placement, refused = None, err
    if any_process(refused is not None):  # collectives: every process calls both
        raise refused or UserError("config key data.placement: 'device' does not fit on another process of this job")
    if any_process(placement.kind == "host") and placement.kind == "device":
        return Placement("host", "data.placement=auto chose host: another process of this job has too little memory")
    return placement


def place_training_data(data_config, data, parallel: DataParallel) -> tuple[Placement, tuple]:
    """Decides data.placement; returns it and (train, valid) ResidentSplits, or (None, None) for host."""
    needed = split_bytes(data.train, data.image_shape) + split_bytes(data.valid, data.image_shape)
    placement = _agreed(data_config.placement, needed)
    log(placement.reason)
    if placement.kind == "host":
        if data_config.in_memory:
            hold_in_memory(data)
        return placement, (None, None)
    start = time.perf_counter()
    resident = (
        place_split(data.train, parallel.replicate, augment=data_config.augment),
        place_split(data.valid, parallel.replicate, augment=False),
    )
    jax.block_until_ready(resident)
    log(f"train and valid copied to {parallel.num_devices} device(s) in {time.perf_counter() - start:.1f} s")
    return placement, resident
