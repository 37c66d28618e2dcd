"""The input pipeline alone: images/second from PCAM HDF5 files through balanced sampling,
batch reads, augmentation and batching, then to the device and normalized there (where jaxpcam
normalizes), for several worker counts. Compare with ``throughput.py``'s synthetic train rate:
if the pipeline is slower than the step, training is input-bound.

    python benchmarks/data_pipeline.py                       # built-in sample, workers 0,1,2
    python benchmarks/data_pipeline.py --data-dir /path/to/pcam --workers 0,2,4 --batch-size 256
    python benchmarks/data_pipeline.py --stain_augment 0.1  # with data.stain_augment's host cost
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import jax

from jaxpcam.core.reporting import log
from jaxpcam.core.runtime import prepare_process
from jaxpcam.data import pipeline as pipeline_lib
from jaxpcam.data import resolve_data_dir, sample_notice, transforms
from jaxpcam.data.normalization import fixed_normalization, normalize
from jaxpcam.data.pcam import open_split


def bench_workers(split, workers: int, args) -> dict:
    norm = fixed_normalization()
    to_device = jax.jit(lambda images: normalize(images, norm).sum())  # the step's first op, forced to run
    start = time.perf_counter()
    batches = iter(
        pipeline_lib.train_dataset(
            split, batch_size=args.batch_size, epochs=1000, data_seed=0, augment_seed=1, balanced=True,
            num_workers=workers, prefetch=args.prefetch,
            transforms=transforms.enabled({"augment": True, "stain_augment": args.stain_augment}),
        )
    )  # fmt: skip
    for _ in range(args.warmup):
        batch = next(batches)
        if args.device:
            to_device(batch["image"]).block_until_ready()
    startup = time.perf_counter() - start
    rates = []
    for _ in range(args.windows):
        t0 = time.perf_counter()
        for _ in range(args.batches):
            batch = next(batches)
            if args.device:
                to_device(batch["image"]).block_until_ready()
        rates.append(args.batches * args.batch_size / (time.perf_counter() - t0))
    rates.sort()
    batches.close()  # stops the worker processes and frees their prefetched batches' shared memory
    del batch
    pipeline_lib.release_shared_memory()
    return {
        "workers": workers,
        "images_per_second": statistics.median(rates),
        "images_per_second_min": rates[0],
        "images_per_second_max": rates[-1],
        "startup_s": startup,
        "batch_size": args.batch_size,
    }


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data_dir", "--data-dir", default=None, help="PCAM folder (default: the built-in sample)")
    p.add_argument("--workers", default="0,1,2", help="Grain worker process counts to compare")
    p.add_argument("--batch_size", "--batch-size", type=int, default=128)
    p.add_argument("--batches", type=int, default=20, help="batches per timed window")
    p.add_argument("--windows", type=int, default=3)
    p.add_argument("--warmup", type=int, default=3, help="untimed batches (worker start-up, page cache)")
    p.add_argument("--prefetch", type=int, default=4)
    p.add_argument(
        "--in_memory", "--in-memory", action="store_true", help="data.in_memory: hold the split in RAM (workers 0 only)"
    )
    p.add_argument("--no_device", "--no-device", dest="device", action="store_false", help="stop at host batches")
    p.add_argument("--stain_augment", "--stain-augment", type=float, default=0.0,
                   help="data.stain_augment strength (0 = flips/rotations only)")  # fmt: skip
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    args.workers = [int(w) for w in args.workers.split(",") if w.strip()]
    if min(args.workers) < 0 or min(args.batch_size, args.batches, args.windows) < 1:
        p.error("--workers must be >= 0; --batch-size, --batches and --windows >= 1")
    if not 0 <= args.stain_augment <= 1:
        p.error("--stain_augment must be in [0, 1]")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    data_dir, source = resolve_data_dir(args.data_dir or "")
    if source == "sample":
        log(sample_notice(data_dir, "benchmarking the input pipeline on"))
    split = open_split(data_dir, "train")
    if args.in_memory:
        if any(args.workers):
            sys.exit("--in-memory works with --workers 0 only (workers would each copy the split)")
        split.load_into_memory()
    results = [bench_workers(split, w, args) for w in args.workers]
    where = "in RAM" if args.in_memory else "from H5"
    stained = f", stain_augment {args.stain_augment}" if args.stain_augment else ""
    print(f"\ninput pipeline, {data_dir} train ({len(split)} images, {where}), batch {args.batch_size}{stained}, "
          f"{'to device + normalize' if args.device else 'host only'}")  # fmt: skip
    print(f"{'workers':>7} {'img/s':>9} {'(min-max)':>15} {'startup s':>10}")
    for r in results:
        spread = f"{r['images_per_second_min']:.0f}-{r['images_per_second_max']:.0f}"
        print(f"{r['workers']:>7} {r['images_per_second']:>9.0f} {spread:>15} {r['startup_s']:>10.2f}")
    if args.json:
        payload = {"data_dir": str(data_dir), "device": str(jax.devices()[0]), "jax": jax.__version__,
                   "stain_augment": args.stain_augment, "results": results}  # fmt: skip
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    prepare_process()
    sys.exit(main())
