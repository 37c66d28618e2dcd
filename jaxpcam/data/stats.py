"""Per-channel pixel statistics of the training split, for ``data.normalization='train_stats'``."""

import hashlib
import json
from pathlib import Path

import numpy as np

from jaxpcam.core.files import write_text_atomic
from jaxpcam.core.reporting import log
from jaxpcam.data.pcam import count_nonfinite, file_fingerprint

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


def _cached(name: str, key: str, folders, compute, what: str) -> dict:
    """``compute()`` (a JSON-ready dict), cached as ``name`` in the first writable folder of
    ``folders``; a cached file is used when it was written for the same ``key``."""
    for folder in folders:
        try:
            saved = json.loads((folder / name).read_text())
        except (OSError, ValueError):  # absent, unreadable or half-written: look further, else compute
            continue
        if saved.get("key") == key:
            log(f"{what} from {folder / name}")
            return saved
    result = {"key": key, **compute()}
    for folder in folders:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            write_text_atomic(folder / name, json.dumps(result))
            log(f"cached {what} in {folder / name}")
            break
        except OSError:
            continue
    return result


def _name(prefix: str, key: str) -> str:
    return f"{prefix}-{hashlib.blake2b(key.encode(), digest_size=8).hexdigest()}.json"


def cached_channel_stats(split, key: str, folders: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """channel_stats, cached as JSON under a name derived from ``key`` (the train file's
    fingerprint plus the manifest, if any) in the first writable folder of ``folders``."""

    def compute() -> dict:
        mean, std = channel_stats(split)
        return {"mean": mean.tolist(), "std": std.tolist()}

    saved = _cached(_name("train_stats", key), key, folders, compute, "train-split channel statistics")
    return np.asarray(saved["mean"], np.float32), np.asarray(saved["std"], np.float32)


def cached_nonfinite_count(x_path: Path, folders) -> int:
    """count_nonfinite of a float ``x`` file, scanned once: the count is cached per file
    fingerprint and modification time, so a full-size file is not read again each run (and a
    file edited in place, even where the sampled fingerprint does not look, is)."""
    key = f"nonfinite|{file_fingerprint(x_path)}|{x_path.stat().st_mtime_ns}"

    def compute() -> dict:
        log(f"scanning {x_path.name} for non-finite pixels (NaN, inf); the count is cached for later runs")
        return {"file": str(x_path), "nonfinite": count_nonfinite(x_path)}

    what = f"non-finite pixel count of {x_path.name}"
    return int(_cached(_name("nonfinite", key), key, folders, compute, what)["nonfinite"])


def image_features(images: np.ndarray) -> dict[str, np.ndarray]:
    """Per-image intensity features (0..255): mean of each channel, overall brightness, contrast,
    and for colour images each channel's share (its mean over the brightness): the colour of the
    stain, which exposure does not change, so a stain shift stands out from bright or dark slides."""
    flat = images.reshape(len(images), -1, images.shape[-1]).astype(np.float32)
    channels = flat.shape[-1]
    features = {f"channel{c}_mean": flat[:, :, c].mean(axis=1, dtype=np.float64) for c in range(channels)}
    features["brightness"] = flat.reshape(len(images), -1).mean(axis=1, dtype=np.float64)
    features["contrast"] = flat.reshape(len(images), -1).std(axis=1, dtype=np.float64)
    if channels > 1:
        for c in range(channels):
            features[f"channel{c}_share"] = features[f"channel{c}_mean"] / np.maximum(features["brightness"], 1e-6)
    return features
