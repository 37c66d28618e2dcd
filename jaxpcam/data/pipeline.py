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

from jaxpcam.data.pcam import PcamSplit
from jaxpcam.data.transforms import Transform


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
    read, the ``label``, the ``mask`` (False for padding rows at position -1, which read index 0)
    and, under ``transforms``, each augmentation's per-image parameters by name, drawn from
    ``augment_seed`` (jaxpcam.data.transforms). The one definition both placements use: LoadBatch
    reads and augments the images on the host, ``data.placement=device`` on the device.
    """

    labels: np.ndarray
    transforms: tuple[Transform, ...] = ()  # the enabled augmentations, in application order
    augment_seed: int = 0

    def __call__(self, pairs: np.ndarray) -> dict:
        positions, indices = pairs[:, 0], pairs[:, 1]
        mask = positions >= 0
        indices = np.where(mask, indices, 0)
        labels = np.where(mask, self.labels[indices], 0).astype(self.labels.dtype)
        drawn = {t.name: t.draw(self.augment_seed, positions) for t in self.transforms}
        return {"index": indices.astype(np.int32), "label": labels, "mask": mask, "transforms": drawn}


@dataclasses.dataclass(frozen=True)
class LoadBatch:
    """Reads and augments one batch of (position, index) rows; rows at position -1 are padding:
    zero images with ``mask`` False."""

    source: PcamSplit
    transforms: tuple[Transform, ...] = ()
    augment_seed: int = 0

    def __call__(self, pairs: np.ndarray) -> dict:
        rows = BatchIndices(self.source.labels, self.transforms, self.augment_seed)(pairs)
        images = self.source.read(rows["index"])
        for transform in self.transforms:
            images = transform.host(images, rows["transforms"][transform.name])
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
    augment_seed: int,
    balanced: bool,
    num_workers: int = 0,
    prefetch: int = 4,
    start_step: int = 0,
    rows: slice | None = None,
    images: bool = True,
    transforms: tuple[Transform, ...] = (),
) -> grain.IterDataset:
    """Training batches for all epochs; epoch e is steps [e * S, (e + 1) * S), S = N // batch.

    ``batch_size`` is the global batch; ``rows`` (multi-process) the part of it this process reads.
    ``images=False`` yields the batches' BatchIndices instead of their images (data.placement=device).
    ``augment_seed`` keys the augmentations ``transforms`` (transforms.enabled), per stream position.
    """
    sampler = TrainBatches(
        source.labels, data_seed, batch_size, steps_per_epoch(len(source), batch_size), epochs, balanced
    )
    batches = sampler.slice(slice(start_step, None)).map(ProcessRows(rows))
    augment = (transforms, augment_seed)
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


def eval_batch_size(requested: int, num_records: int) -> int:
    """The batch an evaluation pass uses: the one asked for, but never beyond the split (padding
    to a batch larger than the split is memory spent on zeros; data.eval_batch_size may be 2**20)."""
    return max(1, min(int(requested), int(num_records)))


def steps_per_epoch(num_records: int, batch_size: int) -> int:
    return num_records // batch_size
