"""The one value-range rule of every image reader: training (train, valid), evaluation (test,
``evaluate --data_dir``), the digits file and ``predict`` all ask this module.

Models take uint8 pixels, 0..255. Stored floats are read as 0..255 too (course copies store
float32), except:

- floats that all lie within 0..1 are images scaled to 0..1: read as 0..255 they would be black
  tiles (every pixel 0 or 1), and a model trained on them learns nothing while looking fine. Every
  reader refuses them in one line (``check_not_scaled``), before any work;
- NaN or inf pixels are refused (training and evaluation: ``data.check_split``; predict here);
- values outside 0..255: training files are clipped to 0..255 (as the course code did; the audit
  counts them), and predict, which has no audit behind it, refuses them (``checked_uint8``).
"""

import numpy as np

from jaxpcam.core.errors import UserError

SAMPLE_IMAGES = 64  # images looked at per file: evenly spaced, head and tail included


def sample_indices(count: int, size: int = SAMPLE_IMAGES) -> np.ndarray:
    return np.unique(np.linspace(0, max(count - 1, 0), min(size, count)).astype(int))


def scaled_to_one(values: np.ndarray) -> bool:
    """Floats (finite ones) all within 0..1, not all 0: images scaled to 0..1."""
    values = np.asarray(values)
    if values.dtype.kind != "f" or values.size == 0:
        return False
    finite = values[np.isfinite(values)]
    return finite.size > 0 and float(finite.min()) >= 0.0 and 0.0 < float(finite.max()) <= 1.0


def scaled_message(source, what: str) -> str:
    return f"{source}: {what} hold floats within 0..1; the model takes 0..255 (multiply by 255)"


def check_not_scaled(sample: np.ndarray, source, what: str = "the images") -> None:
    """UserError when ``sample`` (images of one file, or a batch) holds floats scaled to 0..1."""
    if scaled_to_one(sample):
        raise UserError(scaled_message(source, what))


def as_uint8(block: np.ndarray) -> np.ndarray:
    """Pixels as training reads them: float values clipped to 0..255 and cast (NaN as 0,
    without numpy's cast warning; training refuses such files, the audit counts them)."""
    if block.dtype == np.uint8:
        return block
    clipped = np.clip(block, 0, 255)
    np.nan_to_num(clipped, copy=False, nan=0.0)
    return clipped.astype(np.uint8)


def checked_uint8(block: np.ndarray, start: int, source) -> np.ndarray:
    """predict's reading: NaN or inf, values outside 0..255, or floats that are all within 0..1
    are data errors naming the image: clipping them would predict on other images without a word."""
    if block.dtype == np.uint8:
        return block
    flat = block.reshape(len(block), -1)
    if block.dtype.kind == "f" and not np.isfinite(block).all():
        image = start + int(np.argmax(~np.isfinite(flat).all(axis=1)))
        raise UserError(f"{source}: image {image} holds non-finite pixel values (NaN or inf)")
    outside = (flat < 0).any(axis=1) | (flat > 255).any(axis=1)
    if outside.any():
        image = start + int(np.argmax(outside))
        low, high = flat[outside.argmax()].min(), flat[outside.argmax()].max()
        raise UserError(f"{source}: image {image} holds pixel values {low:g}..{high:g}; the model takes 0..255")
    check_not_scaled(block, source, f"images {start}..{start + len(block) - 1}")
    return as_uint8(block)
