"""Per-channel pixel statistics of the training split, for ``data.normalization='train_stats'``."""

import numpy as np

from jaxpcam.data.pcam import PcamSplit

_CHUNK = 1024


def channel_stats(split: PcamSplit) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std per channel in pixel units (0..255), streamed in chunks, float64 sums."""
    total = np.zeros(3)
    total_sq = np.zeros(3)
    for start in range(0, len(split), _CHUNK):
        chunk = split.read(np.arange(start, min(start + _CHUNK, len(split)))).astype(np.float64)
        total += chunk.sum(axis=(0, 1, 2))
        total_sq += np.square(chunk).sum(axis=(0, 1, 2))
    count = len(split) * 96 * 96
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 1e-12))
    return mean.astype(np.float32), std.astype(np.float32)
