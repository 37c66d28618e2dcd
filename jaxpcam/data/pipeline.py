"""The Grain input pipeline: seeded sampling, batch reads, train-only augmentation.

Every batch is a pure function of (data seed, augment seed, position in the stream), so the
stream is the same with 0 or N worker processes, and position ``step * batch_size`` is where a
resumed run picks up. Batches hold uint8 images; normalisation happens on the device inside the
jitted step (4x less host-to-device traffic, and the statistics travel with the train state).

Numpy only: worker processes must not import jax (it would grab accelerator memory).
"""

import dataclasses
import functools
import gc

import grain
import numpy as np
from absl import flags

from jaxpcam.data import stain
from jaxpcam.data.pcam import PcamSplit

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a counter-based hash, so each record's randomness is independent."""
    with np.errstate(over="ignore"):
        x = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK64
        x = ((x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK64
        x = ((x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK64
        return x ^ (x >> np.uint64(31))


def dihedral_codes(seed: int, positions: np.ndarray) -> np.ndarray:
    """One of the 8 flips/90-degree rotations per record, from (seed, stream position)."""
    keyed = _mix64(np.uint64(seed)) ^ positions.astype(np.uint64)
    return (_mix64(keyed) >> np.uint64(61)).astype(np.int64)


_STAIN_SALT = np.uint64(0x57A1_9E5D_0000_0000)  # keeps stain numbers independent of the dihedral codes


def augment_uniforms(seed: int, positions: np.ndarray, count: int) -> np.ndarray:
    """(len(positions), count) numbers in [0, 1) from (seed, stream position), like the codes."""
    keys = _mix64(_mix64(np.uint64(seed) ^ _STAIN_SALT) + np.arange(count, dtype=np.uint64))
    bits = _mix64(keys[None, :] ^ positions.astype(np.uint64)[:, None]) >> np.uint64(11)
    return bits.astype(np.float64) * 2.0**-53


def apply_dihedral(images: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """images (B, H, W, C) with H == W; code k: rotate k % 4 quarter turns, then flip if k >= 4.

    Each pixel moves as one opaque C-channel item, which numpy copies about twice as fast as
    three strided channel bytes.
    """
    images = np.ascontiguousarray(images)
    pixel = np.dtype((np.void, images.dtype.itemsize * images.shape[-1]))
    out = np.empty_like(images)
    source, target = images.view(pixel)[..., 0], out.view(pixel)[..., 0]
    for code in np.unique(codes):
        sel = np.flatnonzero(codes == code)
        view = np.rot90(source[sel], k=int(code) % 4, axes=(1, 2))
        target[sel] = view[:, :, ::-1] if code >= 4 else view
    return out


def epoch_indices(labels: np.ndarray, seed: int, epoch: int, count: int, balanced: bool) -> np.ndarray:
    """The source indices one epoch visits, from (seed, epoch) alone.

    balanced: ``count`` draws with replacement, each class equally likely, the rule of torch's
    ``WeightedRandomSampler(1 / class_count[label], replacement=True)``; else a permutation.
    """
    rng = np.random.default_rng([seed, epoch])
    if not balanced:
        return rng.permutation(len(labels))[:count]
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    weights = 1.0 / counts[inverse]
    return rng.choice(len(labels), size=count, replace=True, p=weights / weights.sum())


class TrainBatches(grain.MapDataset):
    """Step s -> the (position, source index) rows of global batch s, over ``epochs`` epochs.

    Record p of the stream (p = s * batch_size + row) is drawn as ``epoch_indices(seed, p // R)
    [p % R]`` with R = steps_per_epoch * batch_size, so no batch straddles two epochs. Whole
    batches are sliced out of the epoch's draw (one numpy slice, not one Python call per record):
    on a GPU the host must produce a batch of indices in well under a millisecond.
    """

    def __init__(self, labels, seed: int, batch_size: int, steps_per_epoch: int, epochs: int, balanced: bool):
        super().__init__()
        self._labels, self._seed, self._balanced = labels, seed, balanced
        self._batch, self._steps, self._epochs = batch_size, steps_per_epoch, epochs

    def __len__(self) -> int:
        return self._steps * self._epochs

    @functools.lru_cache(maxsize=2)  # noqa: B019 - one epoch's draw, reused by every batch in it
    def _epoch(self, epoch: int) -> np.ndarray:
        return epoch_indices(self._labels, self._seed, epoch, self._steps * self._batch, self._balanced)

    def __getitem__(self, step):
        if isinstance(step, slice):
            return self.slice(step)
        epoch, offset = divmod(step, self._steps)
        start = offset * self._batch
        positions = np.arange(step * self._batch, (step + 1) * self._batch, dtype=np.int64)
        return np.stack([positions, self._epoch(epoch)[start : start + self._batch]], axis=1)

    def __str__(self) -> str:
        return f"TrainBatches(n={len(self._labels)}, batch={self._batch}, balanced={self._balanced})"


class EvalBatches(grain.MapDataset):
    """Batch k -> rows (p, p % size) for positions p in [k * B, (k + 1) * B): every record once,
    in file order, ``passes`` times; the last batch may be short."""

    def __init__(self, size: int, batch_size: int, passes: int = 1):
        super().__init__()
        self._size, self._batch, self._passes = size, batch_size, passes

    def __len__(self) -> int:
        return -(-self._size * self._passes // self._batch)

    def __getitem__(self, k):
        if isinstance(k, slice):
            return self.slice(k)
        positions = np.arange(k * self._batch, min((k + 1) * self._batch, self._size * self._passes), dtype=np.int64)
        return np.stack([positions, positions % self._size], axis=1)


@dataclasses.dataclass(frozen=True)
class ProcessRows:
    """A global batch of (position, index) rows -> the rows this process reads.

    ``pad_to`` first pads a short (last) batch with rows at position -1, which LoadBatch masks
    out, so evaluation keeps one compiled shape and the padding lands where it would with one
    process.
    """

    rows: slice | None = None
    pad_to: int | None = None

    def __call__(self, pairs: np.ndarray) -> np.ndarray:
        if self.pad_to and len(pairs) < self.pad_to:
            pad = np.tile(np.asarray([[-1, 0]], pairs.dtype), (self.pad_to - len(pairs), 1))
            pairs = np.concatenate([pairs, pad])
        return pairs if self.rows is None else pairs[self.rows]


@dataclasses.dataclass(frozen=True)
class BatchIndices:
    """What a batch of (position, index) rows is, without its images: the source ``index`` to
    read, the dihedral ``code`` to apply (0 = none), the ``label`` and the ``mask`` (False for
    padding rows at position -1, which read index 0), and with ``stain_strength`` > 0 the
    per-image ``stain`` parameters (jaxpcam.data.stain). The one definition both placements use:
    LoadBatch reads the images on the host, ``data.placement=device`` gathers them on the device.
    """

    labels: np.ndarray
    augment_seed: int | None = None
    stain_strength: float = 0.0  # data.stain_augment; needs augment_seed
    dihedral: bool = True  # data.augment: flips and rotations (with augment_seed)

    def __call__(self, pairs: np.ndarray) -> dict:
        positions, indices = pairs[:, 0], pairs[:, 1]
        mask = positions >= 0
        indices = np.where(mask, indices, 0)
        if self.augment_seed is None or not self.dihedral:
            codes = np.zeros(len(pairs), np.int32)
        else:
            codes = np.where(mask, dihedral_codes(self.augment_seed, positions), 0).astype(np.int32)
        labels = np.where(mask, self.labels[indices], 0).astype(self.labels.dtype)
        rows = {"index": indices.astype(np.int32), "code": codes, "label": labels, "mask": mask}
        if self.augment_seed is not None and self.stain_strength > 0:
            uniforms = augment_uniforms(self.augment_seed, positions, stain.UNIFORMS)
            rows["stain"] = stain.parameters(uniforms, self.stain_strength)
        return rows


@dataclasses.dataclass(frozen=True)
class LoadBatch:
    """Reads and (optionally) augments one batch of (position, index) rows; rows at position -1
    are padding: zero images with ``mask`` False."""

    source: PcamSplit
    augment_seed: int | None = None
    stain_strength: float = 0.0
    dihedral: bool = True

    def __call__(self, pairs: np.ndarray) -> dict:
        rows = BatchIndices(self.source.labels, self.augment_seed, self.stain_strength, self.dihedral)(pairs)
        images = self.source.read(rows["index"])
        if self.augment_seed is not None and self.dihedral:
            images = apply_dihedral(images, rows["code"])
        if "stain" in rows:
            images = stain.perturb(images, rows["stain"])
        if not rows["mask"].all():
            images[~rows["mask"]] = 0
        return {"image": images, "label": rows["label"], "mask": rows["mask"]}


def _to_iter(dataset: grain.MapDataset, num_workers: int, prefetch: int) -> grain.IterDataset:
    # Two reader threads: h5py serialises reads on a global lock, so more threads only add
    # contention; worker processes (num_workers > 0) are what parallelises reading.
    ds = dataset.to_iter_dataset(grain.ReadOptions(num_threads=2, prefetch_buffer_size=prefetch))
    if num_workers > 0:
        if not flags.FLAGS.is_parsed():  # Grain's workers read absl flags; outside an absl app
            flags.FLAGS.mark_as_parsed()  # (tests, notebooks) their defaults are what we want
        ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers))
    return ds


def release_shared_memory() -> None:
    """Frees the shared memory of worker batches already dropped, before the process ends.

    Grain's worker processes hand batches over in shared memory, which the main process unlinks
    from a background thread when a batch is dropped; at exit the last ones are still pending and
    Python's resource_tracker reports them as leaked (google/grain#398). This waits for that thread
    and makes later unlinks immediate. Call it after closing the iterators, once batches are dropped.
    """
    gc.collect()
    from grain._src.python.ipc.shared_memory_array import SharedMemoryArray  # no public API for this

    pool = getattr(SharedMemoryArray, "_del_thread_pool", None)
    if pool is not None:
        SharedMemoryArray._del_thread_pool = None  # from now on a dropped batch is unlinked at once
        pool.close()
        pool.join()


def train_dataset(
    source: PcamSplit,
    *,
    batch_size: int,
    epochs: int,
    data_seed: int,
    augment_seed: int | None,
    balanced: bool,
    num_workers: int = 0,
    prefetch: int = 4,
    start_step: int = 0,
    rows: slice | None = None,
    images: bool = True,
    stain_strength: float = 0.0,
    dihedral: bool = True,
) -> grain.IterDataset:
    """Training batches for all epochs; epoch e is steps [e * S, (e + 1) * S), S = N // batch.

    ``batch_size`` is the global batch; ``rows`` (multi-process) the part of it this process reads.
    ``images=False`` yields the batches' BatchIndices instead of their images (data.placement=device).
    ``augment_seed`` keys the flips/rotations (``dihedral``) and the stain augmentation
    (``stain_strength`` > 0, data.stain_augment), both per stream position.
    """
    sampler = TrainBatches(
        source.labels, data_seed, batch_size, steps_per_epoch(len(source), batch_size), epochs, balanced
    )
    batches = sampler.slice(slice(start_step, None)).map(ProcessRows(rows))
    augment = (augment_seed, stain_strength, dihedral)
    load = LoadBatch(source, *augment) if images else BatchIndices(source.labels, *augment)
    return _to_iter(batches.map(load), num_workers if images else 0, prefetch)


def eval_dataset(
    source: PcamSplit,
    *,
    batch_size: int,
    num_workers: int = 0,
    prefetch: int = 4,
    repeat: bool = False,
    rows: slice | None = None,
    images: bool = True,
):
    """Every record once, in order, padded to full batches with a mask (with ``repeat``, 1000
    passes for benchmarks: one set of worker processes instead of one per pass)."""
    batches = EvalBatches(len(source), batch_size, 1000 if repeat else 1).map(ProcessRows(rows, pad_to=batch_size))
    load = LoadBatch(source) if images else BatchIndices(source.labels)
    return _to_iter(batches.map(load), num_workers if images else 0, prefetch)


def steps_per_epoch(num_records: int, batch_size: int) -> int:
    return num_records // batch_size
