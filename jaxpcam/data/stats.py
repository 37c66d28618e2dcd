"""Per-channel pixel statistics of the training split, for ``data.normalization='train_stats'``."""

import numpy as np

_CHUNK = 1024


def channel_stats(split) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std per channel in pixel units (0..255), streamed in chunks, float64 sums."""
    total = total_sq = 0.0
    pixels = 0
    for start in range(0, len(split), _CHUNK):
        chunk = split.read(np.arange(start, min(start + _CHUNK, len(split)))).astype(np.float64)
        total = total + chunk.sum(axis=(0, 1, 2))
        total_sq = total_sq + np.square(chunk).sum(axis=(0, 1, 2))
        pixels += chunk.shape[0] * chunk.shape[1] * chunk.shape[2]
    mean = total / pixels
    std = np.sqrt(np.maximum(total_sq / pixels - mean**2, 1e-12))
    return mean.astype(np.float32), std.astype(np.float32)
