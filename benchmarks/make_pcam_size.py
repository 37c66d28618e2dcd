"""A PCAM-size folder made by tiling the built-in sample, to time full-size epochs without the data.

    python benchmarks/make_pcam_size.py /scratch/pcam-size            # 32x: 262,144 / 32,768 / 32,768
    python benchmarks/throughput.py --source device --data-dir /scratch/pcam-size

Every split of the source folder is repeated ``--times`` times, in the exact PCAM format
(uint8 ``x`` (N, 96, 96, 3) stored contiguously, ``y`` (N, 1, 1, 1)), so the real reader, the
sampler and the device path see PCAM's sizes: 7.25 GB of train images at 32x. The images are
the sample's own, repeated: good for timing, meaningless for accuracy.
"""

import argparse
import sys
from pathlib import Path

import h5py
import numpy as np

from jaxpcam.data.pcam import SPLITS, split_paths
from jaxpcam.data.sample import ensure_sample

BLOCK = 4096


def tile_split(source_dir: Path, out_dir: Path, split: str, times: int) -> int:
    (x_in, y_in), (x_out, y_out) = split_paths(source_dir, split), split_paths(out_dir, split)
    with h5py.File(x_in, "r") as fx, h5py.File(y_in, "r") as fy:
        images, labels = fx["x"], fy["y"][...]
        n = len(labels)
        with h5py.File(x_out, "w") as gx:
            x = gx.create_dataset("x", (n * times, *images.shape[1:]), np.uint8)
            for start in range(0, n, BLOCK):
                block = np.clip(images[start : start + BLOCK], 0, 255).astype(np.uint8)
                for copy in range(times):
                    x[copy * n + start : copy * n + start + len(block)] = block
        with h5py.File(y_out, "w") as gy:
            gy.create_dataset("y", data=np.tile(labels.reshape(n, 1, 1, 1), (times, 1, 1, 1)).astype(np.uint8))
    return n * times


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out_dir", type=Path, help="folder to write (created; its PCAM files are replaced)")
    p.add_argument("--times", type=int, default=32, help="copies of each split (32: PCAM's train size)")
    p.add_argument("--source", type=Path, default=None, help="PCAM-format folder to tile (default: the sample)")
    args = p.parse_args(argv)
    if args.times < 1:
        p.error("--times must be >= 1")
    source = args.source or ensure_sample()
    if args.out_dir.resolve() == source.resolve():
        p.error("out_dir must differ from the source folder")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        count = tile_split(source, args.out_dir, split, args.times)
        print(f"{split}: {count} images in {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
