"""Data audit: what is in a PCAM folder, what is wrong with it, and which images training can use.

One streaming pass per split, in chunks (bounded memory: per image only a few numbers and a
16-byte hash are kept), finds:

- empty tiles (near-constant: pixel std < EMPTY_STD),
- values outside 0..255 (float32 course copies, before the clip-and-cast on read), NaN and inf
  included; the count of non-finite values is reported per file (training refuses such a file),
- intensity outliers: robust z-score (median/MAD) of the image mean or std beyond OUTLIER_Z,
- trigger patterns: small high-contrast blocks that tissue does not produce, either *patterned*
  (mean |gradient| in a 4x4 window >= PATTERN_GRADIENT, e.g. a black/white checkerboard, ~450;
  tissue stays below ~100) or *a colour tissue never has* over a 3x3+ block (black: every
  channel < 25; a pure primary: one channel >= 230, the other two summing to <= 60). White
  blocks are not detectable: they look like background.
- exact duplicates (blake2b of the uint8 pixels) within a split and across splits (leakage).

The clean-index manifest of a split lists the images that are none of these (the first copy of
a within-split duplicate is kept; training images that also occur in valid/test are dropped).
"""

import dataclasses
import hashlib
import json
import time
import zlib
from pathlib import Path

import h5py
import numpy as np

from jaxpcam.core.errors import UserError
from jaxpcam.core.reporting import ProgressLine, log
from jaxpcam.data.pcam import IMAGE_SHAPE, SPLITS, file_fingerprint, split_paths
from jaxpcam.data.pixels import as_uint8, sample_indices, scaled_message, scaled_to_one

EMPTY_STD = 2.0
OUTLIER_Z = 5.0  # clean synthetic tissue peaks at |z| = 3.0 over 8,192 images
PATTERN_GRADIENT = 300.0
_CHUNK = 1024
_GZIP_SAMPLE = 256


def _box_mean(a: np.ndarray, k: int) -> np.ndarray:
    """Mean over every k x k window of (B, H, W), output (B, H-k+1, W-k+1), via integral images."""
    s = np.pad(a, ((0, 0), (1, 0), (1, 0))).cumsum(1).cumsum(2)
    return (s[:, k:, k:] - s[:, :-k, k:] - s[:, k:, :-k] + s[:, :-k, :-k]) / (k * k)


def trigger_scores(images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per image: pattern score, whether an unnatural 3x3+ block exists, and (row, col) of the find.

    Only images with at least 9 unnatural pixels (black, or a pure primary colour) get
    the 3x3 window check: tissue has almost none, so the pass costs about one gradient.
    """
    b = len(images)
    r, g, bl = images[..., 0], images[..., 1], images[..., 2]
    gray = (r.astype(np.float32) + g + bl) / 3.0  # channel slices: ~10x faster than mean(axis=3)
    grad = np.zeros_like(gray)
    grad[:, :, :-1] = np.abs(gray[:, :, 1:] - gray[:, :, :-1])
    grad[:, :-1, :] += np.abs(gray[:, 1:, :] - gray[:, :-1, :])
    pattern = _box_mean(grad, 4).reshape(b, -1)
    where = np.stack(np.unravel_index(pattern.argmax(axis=1), (93, 93)), axis=1) + 2
    high = np.maximum(np.maximum(r, g), bl)
    other_two = r.astype(np.int16) + g + bl - high  # saturated purple nuclei keep red ~100
    odd = (high < 25) | ((high >= 230) & (other_two <= 60))
    uniform = np.zeros(b, bool)
    for i in np.flatnonzero(odd.reshape(b, -1).sum(axis=1) >= 9):
        blocks = _box_mean(odd[i : i + 1].astype(np.float32), 3)[0] > 0.999
        if blocks.any():
            uniform[i] = True
            where[i] = np.array(np.unravel_index(blocks.argmax(), blocks.shape)) + 1
    return pattern.max(axis=1), uniform, where


@dataclasses.dataclass
class SplitScan:
    """Per-image numbers of one split, gathered in one pass."""

    labels: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    out_of_range: np.ndarray
    nonfinite: np.ndarray  # NaN/inf values per image (float files only)
    pattern: np.ndarray
    uniform_block: np.ndarray
    trigger_at: np.ndarray  # (N, 2) row, col
    hashes: np.ndarray  # (N,) 16-byte digests


def _progress(line: ProgressLine, label: str, done: int, total: int, start: float) -> None:
    rate = done / max(time.monotonic() - start, 1e-9)
    eta = (total - done) / rate if rate else 0
    line.show(f"{label}: {done}/{total} images, {rate:,.0f}/s, eta {eta:.0f} s", final=done == total)


def scan_split(data_dir: Path, split: str) -> SplitScan:
    x_path, y_path = split_paths(data_dir, split)
    try:
        fx, fy = h5py.File(x_path, "r"), h5py.File(y_path, "r")
    except OSError as err:
        raise UserError(f"cannot read {split} files in {data_dir}: {err}") from None
    with fx, fy:
        x, labels = fx["x"], np.asarray(fy["y"][...]).reshape(-1)
        n = x.shape[0]
        if n and x.dtype.kind == "f" and scaled_to_one(x[sample_indices(n)]):  # data/pixels.py's rule
            log(f"WARNING: {scaled_message(x_path, 'the images')}; training and evaluation refuse it, and "
                "this audit reads every tile as black")  # fmt: skip
        scan = SplitScan(
            labels, np.empty(n), np.empty(n), np.zeros(n, bool), np.zeros(n, np.int64), np.empty(n),
            np.zeros(n, bool), np.zeros((n, 2), np.int32), np.empty(n, "S16"),
        )  # fmt: skip
        start, line = time.monotonic(), ProgressLine()
        for lo in range(0, n, _CHUNK):
            hi = min(lo + _CHUNK, n)
            raw = x[lo:hi]
            if raw.dtype != np.uint8:
                scan.nonfinite[lo:hi] = np.count_nonzero(~np.isfinite(raw), axis=(1, 2, 3))
                outside = (raw.min(axis=(1, 2, 3)) < 0) | (raw.max(axis=(1, 2, 3)) > 255)  # NaN compares False
                scan.out_of_range[lo:hi] = outside | (scan.nonfinite[lo:hi] > 0)
                raw = as_uint8(raw)
            flat = raw.reshape(len(raw), -1).astype(np.float32)
            mean = flat.mean(axis=1, dtype=np.float64)
            mean_sq = np.einsum("ij,ij->i", flat, flat, dtype=np.float64) / flat.shape[1]
            scan.mean[lo:hi], scan.std[lo:hi] = mean, np.sqrt(np.maximum(mean_sq - mean**2, 0.0))
            scan.pattern[lo:hi], scan.uniform_block[lo:hi], scan.trigger_at[lo:hi] = trigger_scores(raw)
            scan.hashes[lo:hi] = [hashlib.blake2b(img.tobytes(), digest_size=16).digest() for img in raw]
            _progress(line, split, hi, n, start)
    return scan


def _robust_z(values: np.ndarray) -> np.ndarray:
    if not len(values):  # an empty split: nothing to score (and no 'mean of empty slice' warning)
        return values
    median = np.median(values)
    mad = np.median(np.abs(values - median)) or 1e-9
    return 0.6745 * (values - median) / mad


def _duplicate_groups(hashes: np.ndarray) -> list[list[int]]:
    _, inverse, counts = np.unique(hashes, return_inverse=True, return_counts=True)
    groups = {}
    for index in np.flatnonzero(counts[inverse] > 1):
        groups.setdefault(int(inverse[index]), []).append(int(index))
    return sorted(groups.values())


def findings(scan: SplitScan) -> dict[str, np.ndarray]:
    """Boolean flags per image, one array per kind of problem."""
    empty = scan.std < EMPTY_STD
    z_mean, z_std = _robust_z(scan.mean), _robust_z(scan.std)
    outlier = ~empty & ((np.abs(z_mean) > OUTLIER_Z) | (np.abs(z_std) > OUTLIER_Z))
    trigger = ~empty & ((scan.pattern >= PATTERN_GRADIENT) | scan.uniform_block)  # an all-black tile is empty
    duplicate = np.zeros(len(scan.labels), bool)
    for group in _duplicate_groups(scan.hashes):
        duplicate[group[1:]] = True  # keep the first copy
    return {"empty": empty, "out_of_range": scan.out_of_range, "outlier": outlier, "trigger": trigger,
            "duplicate": duplicate}  # fmt: skip


def file_report(path: Path) -> dict:
    with h5py.File(path, "r") as f:
        key = "x" if "x" in f else "y"
        d = f[key]
        report = {
            "file": path.name, "dataset": key, "dtype": str(d.dtype), "shape": list(d.shape),
            "chunks": list(d.chunks) if d.chunks else None, "compression": d.compression,
            "compression_opts": d.compression_opts, "bytes_on_disk": path.stat().st_size,
        }  # fmt: skip
        if key == "x" and d.shape[0]:
            n = d.shape[0]
            report["bytes_as_uint8"] = n * int(np.prod(IMAGE_SHAPE))
            sample = as_uint8(d[np.linspace(0, n - 1, min(_GZIP_SAMPLE, n)).astype(int)])
            ratio = len(zlib.compress(sample.tobytes(), 4)) / sample.nbytes
            report["bytes_as_gzip_uint8_estimate"] = int(report["bytes_as_uint8"] * ratio)
    return report


def audit(data_dir: Path, out_dir: Path) -> dict:
    """Scans every split present, writes audit.json and manifest_<split>.json; returns the report."""
    splits = [s for s in SPLITS if all(p.is_file() for p in split_paths(data_dir, s))]
    if "train" not in splits:
        raise UserError(f"no camelyonpatch_level_2_split_train_{{x,y}}.h5 in {data_dir}")
    out_dir.mkdir(parents=True, exist_ok=True)
    files = [file_report(p) for s in splits for p in split_paths(data_dir, s)]
    scans = {s: scan_split(data_dir, s) for s in splits}
    flags = {s: findings(scans[s]) for s in splits}
    nonfinite = {split_paths(data_dir, s)[0].name: int(scans[s].nonfinite.sum()) for s in splits}
    for file in files:
        if file["dataset"] == "x":
            file["nonfinite_pixels"] = nonfinite.get(file["file"], 0)
    report = {"data_dir": str(data_dir), "files": files, "splits": {}}
    for s in splits:
        scan, f = scans[s], flags[s]
        others = np.concatenate([scans[o].hashes for o in splits if o != s] or [np.empty(0, "S16")])
        leaked = np.isin(scan.hashes, others)
        report["splits"][s] = {
            "images": len(scan.labels),
            "positives": int(scan.labels.sum()),
            "positive_fraction": float(scan.labels.mean()) if len(scan.labels) else None,
            "nonfinite_pixels": int(scan.nonfinite.sum()),
            **{kind: np.flatnonzero(mask).tolist() for kind, mask in f.items()},
            "trigger_locations": {int(i): scan.trigger_at[i].tolist() for i in np.flatnonzero(f["trigger"])},
            "duplicate_groups": _duplicate_groups(scan.hashes),
            "also_in_other_splits": np.flatnonzero(leaked).tolist(),
        }
        # Leakage is the training split's problem: valid/test stay as they are for comparability.
        drop = np.any(list(f.values()), axis=0) | (leaked if s == "train" else False)
        manifest = {
            "split": s, "data_dir": str(data_dir),
            "x_fingerprint": file_fingerprint(split_paths(data_dir, s)[0]),
            "kept": np.flatnonzero(~drop).tolist(), "dropped": int(drop.sum()),
        }  # fmt: skip
        (out_dir / f"manifest_{s}.json").write_text(json.dumps(manifest))
    (out_dir / "audit.json").write_text(json.dumps(report, indent=1))
    return report
