"""The digits 4-9 task (the course's SMLP): an HDF5 file with ``images`` (N, 28, 28) uint8 and
``labels`` (N,) holding the original digits; labels 4..9 become classes 0..5 when read, the file
is never rewritten.

:func:`create_digits_h5` writes that file from MNIST IDX files (gzipped or not) when you have
them, or from scikit-learn's bundled 8x8 digits (real handwritten digits, offline; each 8x8
image is scaled 3x to 24x24 and centred in 28x28, as MNIST centres its digits).
"""

import dataclasses
import gzip
from pathlib import Path

import h5py
import numpy as np

from jaxpcam.core.errors import UserError
from jaxpcam.core.files import atomic_path
from jaxpcam.data.pixels import as_uint8, check_not_scaled, sample_indices

DEFAULT_DIGITS = (4, 5, 6, 7, 8, 9)
_IDX_IMAGES, _IDX_LABELS = 2051, 2049


def _read_idx(path: Path, magic: int) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise UserError(f"missing MNIST file {path}") from None
    except (OSError, EOFError) as err:
        raise UserError(f"cannot read {path}: {err}") from None
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise UserError(f"{path} is not an MNIST IDX file of the expected kind (magic {found}, expected {magic})")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise UserError(f"{path} is truncated: {data.size} values for shape {tuple(dims)}")
    return data.reshape(dims)


def _find(folder: Path, stem: str) -> Path:
    for name in (stem, f"{stem}.gz"):
        if (folder / name).is_file():
            return folder / name
    raise UserError(f"missing MNIST file {stem}(.gz) in {folder}")


def load_mnist_idx(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """All MNIST images (N, 28, 28) and labels (N,) from the standard IDX files in ``folder``."""
    images, labels = [], []
    for prefix in ("train", "t10k"):
        images.append(_read_idx(_find(folder, f"{prefix}-images-idx3-ubyte"), _IDX_IMAGES))
        labels.append(_read_idx(_find(folder, f"{prefix}-labels-idx1-ubyte"), _IDX_LABELS))
    return np.concatenate(images), np.concatenate(labels)


def load_sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 8x8 digits as (N, 28, 28) uint8 images and their labels."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    scaled = np.kron(bunch.images, np.ones((3, 3))) * (255.0 / 16.0)  # 0..16 -> 0..255, 8 -> 24 px
    images = np.zeros((len(scaled), 28, 28), np.uint8)
    images[:, 2:26, 2:26] = np.rint(scaled).astype(np.uint8)
    return images, bunch.target.astype(np.uint8)


def create_digits_h5(output_path: Path, labels_to_keep=DEFAULT_DIGITS, mnist_dir: Path | None = None) -> Path:
    """Writes ``images``/``labels`` for the kept digits; MNIST IDX files if given, else sklearn's."""
    images, labels = load_mnist_idx(Path(mnist_dir)) if mnist_dir else load_sklearn_digits()
    keep = np.isin(labels, labels_to_keep)
    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(output_path) as tmp, h5py.File(tmp, "w") as f:
        f["images"] = images[keep]
        f["labels"] = labels[keep]
        f.attrs["source"] = f"MNIST IDX files in {mnist_dir}" if mnist_dir else "scikit-learn load_digits (8x8, x3)"
        f.attrs["labels_kept"] = np.asarray(labels_to_keep)
    return output_path


@dataclasses.dataclass
class DigitsSplit:
    """A subset of a digits file held in memory (a few MB): the interface of PcamSplit."""

    name: str
    images: np.ndarray  # (N, 28, 28, 1) uint8
    labels: np.ndarray  # (N,) int32 classes 0..K-1

    def __len__(self) -> int:
        return len(self.labels)

    def read(self, indices: np.ndarray) -> np.ndarray:
        return self.images[indices]


def open_digits(path: Path, labels_to_keep, seed: int, valid_fraction: float = 0.1):
    """Train and valid splits of a digits file: a seeded shuffle, then the last 10% for validation."""
    try:
        with h5py.File(path, "r") as f:
            missing = {"images", "labels"} - set(f.keys())
            if missing:
                raise UserError(f"{path} lacks dataset(s) {sorted(missing)} (found: {sorted(f.keys())})")
            images, digits = f["images"][...], f["labels"][...].reshape(-1)
    except FileNotFoundError:
        raise UserError(f"missing digits file {path}") from None
    except OSError as err:
        raise UserError(f"cannot read {path} as HDF5 (corrupt or truncated?): {err}") from None
    if images.ndim != 3 or len(images) != len(digits):
        raise UserError(f"{path}: expected images (N, H, W) and labels (N,), got {images.shape} and {digits.shape}")
    keep = list(labels_to_keep)
    unknown = np.setdiff1d(digits, keep)
    if unknown.size:
        raise UserError(f"{path}: labels {unknown[:5].tolist()} are not among data.digits {tuple(keep)}")
    classes = np.searchsorted(np.asarray(keep), digits).astype(np.int32)  # 4..9 -> 0..5, file untouched
    order = np.random.default_rng(seed).permutation(len(digits))
    n_valid = max(1, round(len(digits) * valid_fraction))
    if images.dtype.kind == "f":  # the one value-range rule (data/pixels.py); floats 0..255 are read as such
        check_not_scaled(images[sample_indices(len(images))], path, "its images")
    images = as_uint8(images[..., None])
    train_idx, valid_idx = np.sort(order[:-n_valid]), np.sort(order[-n_valid:])
    return (
        DigitsSplit("train", images[train_idx], classes[train_idx]),
        DigitsSplit("valid", images[valid_idx], classes[valid_idx]),
    )
