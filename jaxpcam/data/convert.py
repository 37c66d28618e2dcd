"""Rewriting a PCAM folder's float32 course copies as uint8 (clipped), chunked one image per
chunk (the layout that keeps random reads fast), optionally compressed."""

import time
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np

from jaxpcam.data.audit_report import megabytes
from jaxpcam.data.pcam import SPLITS, split_paths
from jaxpcam.data.pixels import as_uint8


def read_speed(path: Path, n: int = 2000) -> float:
    """Random single-image reads per second of ``path``'s x."""
    with h5py.File(path, "r") as f:
        x = f["x"]
        indices = np.random.default_rng(0).integers(0, x.shape[0], min(n, x.shape[0]))
        start = time.perf_counter()
        for i in indices:
            x[int(i)]
        return len(indices) / (time.perf_counter() - start)


def _rewrite(x_src: Path, y_src: Path, x_dst: Path, y_dst: Path, compression: str | None, level: int | None) -> None:
    with h5py.File(x_src, "r") as fin, h5py.File(x_dst, "w") as fout:
        x = fin["x"]
        out = fout.create_dataset(
            "x", x.shape, np.uint8, chunks=(1, *x.shape[1:]), compression=compression, compression_opts=level
        )
        for lo in range(0, x.shape[0], 1024):
            out[lo : lo + 1024] = as_uint8(x[lo : lo + 1024])
    with h5py.File(y_src, "r") as fin, h5py.File(y_dst, "w") as fout:
        fout.create_dataset("y", data=np.asarray(fin["y"][...]).astype(np.uint8))


def convert(src: Path, dst: Path, compression: str | None, level: int | None) -> Iterator[str]:
    """Rewrites every split in ``src`` into ``dst``; yields, per split as it is done, a line
    comparing size and read speed before and after."""
    dst.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        x_src, y_src = split_paths(src, split)
        if not x_src.is_file():
            continue
        x_dst, y_dst = split_paths(dst, split)
        _rewrite(x_src, y_src, x_dst, y_dst, compression, level)
        before, after = x_src.stat().st_size, x_dst.stat().st_size
        yield (
            f"{split}: {megabytes(before)} -> {megabytes(after)} ({after / before:.1%}); random single-image reads "
            f"{read_speed(x_src):,.0f}/s before, {read_speed(x_dst):,.0f}/s after"
        )
