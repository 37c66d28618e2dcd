"""The Grain input pipeline: seeded sampling, batch reads, train-only augmentation.

Every batch is a pure function of (data seed, augment seed, position in the stream), so the
stream is the same with 0 or N worker processes, and position ``step * batch_size`` is where a
resumed run picks up. Batches hold uint8 images; normalisation happens on the device inside the
jitted step (4x less host-to-device traffic, and the statistics travel with the train state).

Numpy only: worker processes must not import jax (it would grab accelerator memory).
"""

import dataclasses
import functools

import grain
import numpy as np
from absl import flags

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


class TrainSampler(grain.MapDataset):
    """Position p -> (p, source index) over ``epochs`` epochs of ``records_per_epoch`` each."""

    def __init__(self, labels, seed: int, records_per_epoch: int, epochs: int, balanced: bool):
        super().__init__()
        self._labels, self._seed, self._balanced = labels, seed, balanced
        self._per_epoch, self._epochs = records_per_epoch, epochs

    def __len__(self) -> int:
        return self._per_epoch * self._epochs

    @functools.lru_cache(maxsize=2)  # noqa: B019 - one epoch's draw, reused by every record in it
    def _epoch(self, epoch: int) -> np.ndarray:
        return epoch_indices(self._labels, self._seed, epoch, self._per_epoch, self._balanced)

    def __getitem__(self, position):
        if isinstance(position, slice):
            return self.slice(position)
        epoch, offset = divmod(position, self._per_epoch)
        return position, int(self._epoch(epoch)[offset])

    def __str__(self) -> str:
        return f"TrainSampler(n={len(self._labels)}, balanced={self._balanced})"


class EvalSampler(grain.MapDataset):
    """Position p -> (p, p % size): every record once, in file order, ``passes`` times."""

    def __init__(self, size: int, passes: int = 1):
        super().__init__()
        self._size, self._passes = size, passes

    def __len__(self) -> int:
        return self._size * self._passes

    def __getitem__(self, position):
        if isinstance(position, slice):
            return self.slice(position)
        return position, position % self._size


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
class LoadBatch:
    """Reads and (optionally) augments one batch of (position, index) rows; rows at position -1
    are padding: zero images with ``mask`` False."""

    source: PcamSplit
    augment_seed: int | None = None

    def __call__(self, pairs: np.ndarray) -> dict:
        positions, indices = pairs[:, 0], pairs[:, 1]
        mask = positions >= 0
        images = self.source.read(indices)
        if self.augment_seed is not None:
            images = apply_dihedral(images, dihedral_codes(self.augment_seed, positions))
        labels = self.source.labels[indices]
        if not mask.all():
            images[~mask] = 0
            labels = np.where(mask, labels, 0).astype(labels.dtype)
        return {"image": images, "label": labels, "mask": mask}


def _to_iter(dataset: grain.MapDataset, num_workers: int, prefetch: int) -> grain.IterDataset:
    # Two reader threads: h5py serialises reads on a global lock, so more threads only add
    # contention; worker processes (num_workers > 0) are what parallelises reading.
    ds = dataset.to_iter_dataset(grain.ReadOptions(num_threads=2, prefetch_buffer_size=prefetch))
    if num_workers > 0:
        if not flags.FLAGS.is_parsed():  # Grain's workers read absl flags; outside an absl app
            flags.FLAGS.mark_as_parsed()  # (tests, notebooks) their defaults are what we want
        ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers))
    return ds


def _stack_pairs(pairs) -> np.ndarray:
    return np.asarray(pairs, np.int64)  # (B, 2): position in the stream, index in the file


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
) -> grain.IterDataset:
    """Training batches for all epochs; epoch e is steps [e * S, (e + 1) * S), S = N // batch.

    ``batch_size`` is the global batch; ``rows`` (multi-process) the part of it this process reads.
    """
    per_epoch = steps_per_epoch(len(source), batch_size) * batch_size
    sampler = TrainSampler(source.labels, data_seed, per_epoch, epochs, balanced)
    batches = sampler.batch(batch_size, drop_remainder=True, batch_fn=_stack_pairs)
    batches = batches.slice(slice(start_step, None)).map(ProcessRows(rows)).map(LoadBatch(source, augment_seed))
    return _to_iter(batches, num_workers, prefetch)


def eval_dataset(
    source: PcamSplit,
    *,
    batch_size: int,
    num_workers: int = 0,
    prefetch: int = 4,
    repeat: bool = False,
    rows: slice | None = None,
):
    """Every record once, in order, padded to full batches with a mask (with ``repeat``, 1000
    passes for benchmarks: one set of worker processes instead of one per pass)."""
    batches = EvalSampler(len(source), 1000 if repeat else 1).batch(batch_size, batch_fn=_stack_pairs)
    batches = batches.map(ProcessRows(rows, pad_to=batch_size)).map(LoadBatch(source))
    return _to_iter(batches, num_workers, prefetch)


def steps_per_epoch(num_records: int, batch_size: int) -> int:
    return num_records // batch_size
