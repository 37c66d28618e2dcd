"""Per-channel pixel statistics of the training split, for ``data.normalization='train_stats'``."""

import hashlib
import json
import os
from pathlib import Path

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


def cached_channel_stats(split, key: str, folders: list[Path], log) -> tuple[np.ndarray, np.ndarray]:
    """channel_stats, cached as JSON under a name derived from ``key`` (the train file's
    fingerprint plus the manifest, if any) in the first writable folder of ``folders``."""
    name = f"train_stats-{hashlib.blake2b(key.encode(), digest_size=8).hexdigest()}.json"
    for folder in folders:
        if (folder / name).is_file():
            saved = json.loads((folder / name).read_text())
            log(f"train-split channel statistics from {folder / name}")
            return np.asarray(saved["mean"], np.float32), np.asarray(saved["std"], np.float32)
    mean, std = channel_stats(split)
    for folder in folders:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            tmp = folder / f".{name}.tmp"
            tmp.write_text(json.dumps({"key": key, "mean": mean.tolist(), "std": std.tolist()}))
            os.replace(tmp, folder / name)
            log(f"cached train-split channel statistics in {folder / name}")
            break
        except OSError:
            continue
    return mean, std
