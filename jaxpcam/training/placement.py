"""Where the training data lives: ``data.placement`` = host | device | auto.

``host``: the Grain pipeline reads and augments images on the CPU and sends each batch over.
``device``: the train and valid splits are read once into accelerator memory as uint8 (a full
copy on every device, so each device gathers the rows of its shard without communication);
the Grain pipeline still defines the stream, but sends only each batch's indices, labels, mask
and augmentation parameters (pipeline.BatchIndices), and the jitted step gathers the images and
augments them with each transform's device form (jaxpcam.data.transforms). Both placements
train on the same images in the same order: on the CPU their metrics are bit-identical (with
stain augmentation, the images agree within one level).

``auto`` picks ``device`` when both splits take at most half of the free memory of every local
device (the rest is for the model, the optimizer and activations), else ``host``.
"""

import dataclasses
import time

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from jaxpcam.core.errors import UserError
from jaxpcam.core.reporting import log
from jaxpcam.data import hold_in_memory
from jaxpcam.data.pcam import read_all
from jaxpcam.data.transforms import Transform
from jaxpcam.training.memory import free_device_memory
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


@flax.struct.dataclass
class ResidentSplit:
    """A split's images in device memory, (N, H, W, C) uint8, and the augmentations its batches
    get (their parameters travel with each batch)."""

    images: jax.Array
    transforms: tuple[Transform, ...] = flax.struct.field(pytree_node=False, default=())


def gather_batch(resident: ResidentSplit, batch: dict) -> dict:
    """BatchIndices on the device -> the batch LoadBatch would have read on the host: gathered,
    then augmented by each transform's device form (each equal to its host form, see its class)."""
    picked, mask = resident.images[batch["index"]], batch["mask"]
    for transform in resident.transforms:
        picked = transform.device(picked, batch["transforms"][transform.name], jnp)
    picked = jnp.where(mask[:, None, None, None], picked, jnp.zeros((), picked.dtype))
    return {"image": picked, "label": batch["label"], "mask": mask}


def place_split(split, put, transforms: tuple[Transform, ...] = ()) -> ResidentSplit:
    """Reads ``split`` once and copies it to the device(s) with ``put`` (e.g. DataParallel.replicate)."""
    return ResidentSplit(put(read_all(split)), transforms)


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


def place_training_data(data_config, data, parallel: DataParallel, augmentations: tuple) -> tuple[Placement, tuple]:
    """Decides data.placement; returns it and (train, valid) ResidentSplits, or (None, None) for
    host; ``augmentations`` (transforms.enabled) are the train split's."""
    needed = split_bytes(data.train, data.image_shape) + split_bytes(data.valid, data.image_shape)
    placement = _agreed(data_config.placement, needed)
    log(placement.reason)
    if placement.kind == "host":
        if data_config.in_memory:
            hold_in_memory(data)
        return placement, (None, None)
    start = time.perf_counter()
    resident = (
        place_split(data.train, parallel.replicate, augmentations),
        place_split(data.valid, parallel.replicate),
    )
    jax.block_until_ready(resident)
    log(f"train and valid copied to {parallel.num_devices} device(s) in {time.perf_counter() - start:.1f} s")
    return placement, resident
