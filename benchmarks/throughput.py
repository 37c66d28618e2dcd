"""Training and inference throughput of a registered model, honestly measured.

    python benchmarks/throughput.py                                   # mlp, train+forward, f32
    python benchmarks/throughput.py --dtype bfloat16 --model cnn --batch-sizes 1,32,128
    python benchmarks/throughput.py --source h5 --data-dir /path/to/pcam --num-workers 2
    python benchmarks/throughput.py --source h5 --in-memory      # the split held in RAM (data.in_memory)
    python benchmarks/throughput.py --source device              # the split in device memory (data.placement=device)

synthetic: device-resident random uint8 batches, so it measures the compiled step alone.
h5: the real Grain pipeline (balanced sampling, augmentation, batch reads) from PCAM files
(the built-in sample when --data-dir is not given), so it measures end to end.
device: the split read once into device memory; the Grain pipeline sends each step's indices
and the step gathers and augments on the device (data.placement=device), end to end too.

Compilation is excluded from the timed part and reported on its own; every timed window ends
with ``block_until_ready``; the train step donates the state as training does. Results: a
table on stdout and, with --json, a JSON file. See benchmarks/README.md for how to read them.
"""

import argparse
import functools
import json
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
from _arguments import output_file

from jaxpcam.config import base_config
from jaxpcam.config.checks import DTYPES, MATMUL_PRECISIONS
from jaxpcam.config.files import load_config_file
from jaxpcam.core.errors import UserError
from jaxpcam.core.runtime import apply_run_settings, prepare_process
from jaxpcam.data import pipeline as pipeline_lib
from jaxpcam.data import transforms
from jaxpcam.data.normalization import fixed_normalization
from jaxpcam.models import create_model, model_defaults, model_names
from jaxpcam.training.placement import place_split
from jaxpcam.training.state import create_train_state, make_optimizer
from jaxpcam.training.steps import jit_eval_step, jit_train_step

REPO = Path(__file__).resolve().parents[1]

IMAGE_SHAPE = (96, 96, 3)


def model_config(name: str):
    """configs/<name>.py when it exists (the model as users train it), else the base config."""
    path = REPO / "configs" / f"{name}.py"
    if path.is_file():
        return load_config_file(str(path))
    config = base_config()
    config.model = ml_collections.ConfigDict({"name": name, **model_defaults(name)})
    return config


def peak_memory() -> dict:
    """Device memory stats where the backend has them (GPU), else this process's peak RSS."""
    stats = jax.devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        return {"kind": "device_peak_bytes", "bytes": int(stats["peak_bytes_in_use"])}
    return {"kind": "process_peak_rss_bytes", "bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


def _timed_windows(run_steps, windows: int, steps: int, batch_size: int) -> dict:
    seconds = []
    for _ in range(windows):
        start = time.perf_counter()
        run_steps(steps)  # ends with block_until_ready
        seconds.append(time.perf_counter() - start)
    rates = sorted(steps * batch_size / s for s in seconds)
    return {
        "images_per_second": statistics.median(rates),
        "images_per_second_min": rates[0],
        "images_per_second_max": rates[-1],
        "step_ms": 1000 * statistics.median(seconds) / steps,
        "windows": windows,
        "steps_per_window": steps,
    }


def synthetic_batch(key, batch_size: int) -> dict:
    k_img, k_lab = jax.random.split(key)
    return {
        "image": jax.random.randint(k_img, (batch_size, *IMAGE_SHAPE), 0, 256, jnp.int32).astype(jnp.uint8),
        "label": jax.random.randint(k_lab, (batch_size,), 0, 2, jnp.int32),
        "mask": jnp.ones((batch_size,), bool),
    }


def _open_split(data_dir: str | None, train: bool):
    from jaxpcam.core.reporting import log
    from jaxpcam.data import resolve_data_dir, sample_notice
    from jaxpcam.data.pcam import open_split

    data_dir, source = resolve_data_dir(data_dir or "")
    if source == "sample":
        log(sample_notice(data_dir, "benchmarking on"))
    return open_split(data_dir, "train" if train else "valid")


def _pipeline_batches(args, config, split, batch_size: int, train: bool, images: bool):
    """The Grain stream as training reads it: image batches (h5), or index batches (device)."""
    if train:
        return pipeline_lib.train_dataset(
            split, batch_size=batch_size, epochs=1000, data_seed=0, augment_seed=1, balanced=True,
            num_workers=args.num_workers, prefetch=config.data.prefetch_batches, images=images,
            transforms=transforms.enabled(config.data),
        )  # fmt: skip
    return pipeline_lib.eval_dataset(
        split, batch_size=batch_size, num_workers=args.num_workers, repeat=True, images=images
    )


@functools.lru_cache(maxsize=2)
def _resident(data_dir: str | None, train: bool, augmentations: tuple) -> tuple:
    """(split, its ResidentSplit), read to the device once per split and benchmark process."""
    split = _open_split(data_dir, train)
    return split, jax.block_until_ready(place_split(split, jax.device_put, augmentations))


def bench_one(args, config, mode: str, batch_size: int, dtype: str) -> dict:
    model = create_model(config.model, dtype)
    key = jax.random.key(0)
    state = create_train_state(key, model, make_optimizer(config.training), fixed_normalization(), IMAGE_SHAPE)
    train = mode == "train"
    host, resident = None, None
    if args.source == "h5":
        split = _open_split(args.data_dir, train)
        if args.in_memory:
            split.load_into_memory()
        host = iter(_pipeline_batches(args, config, split, batch_size, train, images=True))
    elif args.source == "device":
        split, resident = _resident(args.data_dir, train, transforms.enabled(config.data) if train else ())
        host = iter(_pipeline_batches(args, config, split, batch_size, train, images=False))
    batch = next(host) if host is not None else synthetic_batch(jax.random.key(1), batch_size)
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), batch)
    start = time.perf_counter()
    if train:
        compiled = jit_train_step.lower(state, abstract, key, resident).compile()
    else:
        compiled = jit_eval_step.lower(state, abstract, resident).compile()
    compile_s = time.perf_counter() - start
    holder = {"state": state, "wait": 0.0}

    def run_steps(n: int) -> None:
        out = None
        for _ in range(n):
            b = batch
            if host is not None:
                t0 = time.perf_counter()
                b = next(host)
                holder["wait"] += time.perf_counter() - t0
            if train:
                holder["state"], out = compiled(holder["state"], b, key, resident)
            else:
                out = compiled(holder["state"], b, resident)
        jax.block_until_ready((holder["state"], out))

    run_steps(args.warmup)
    holder["wait"] = 0.0
    timing = _timed_windows(run_steps, args.windows, args.steps, batch_size)
    total = args.windows * args.steps * timing["step_ms"] / 1000
    result = {"mode": mode, "batch_size": batch_size, "dtype": dtype, "compile_s": compile_s, **timing}
    if host is not None:
        result["data_wait_fraction"] = min(holder["wait"] / total, 1.0) if total > 0 else 0.0
        result["in_memory"] = args.in_memory
        result["records"] = len(split)
    result["peak_memory"] = peak_memory()
    return result


def environment() -> dict:
    device = jax.devices()[0]
    return {
        "device": f"{device.platform}:{getattr(device, 'device_kind', '')}",
        "device_count": jax.device_count(),
        "jax": jax.__version__,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
    }


def print_table(results: list[dict], env: dict) -> None:
    print(f"\ndevice {env['device']} x{env['device_count']}, jax {env['jax']}, XLA_FLAGS='{env['xla_flags']}'")
    print(f"matmul precision {env['matmul_precision']}, deterministic GPU ops {env['deterministic_gpu_ops']}")
    head = f"{'model':6} {'source':9} {'mode':7} {'dtype':8} {'batch':>5} {'img/s':>9} {'(min-max)':>17} "
    print(head + f"{'step ms':>9} {'compile s':>9} {'data wait':>9} {'peak MB':>8}")
    for r in results:
        spread = f"{r['images_per_second_min']:.0f}-{r['images_per_second_max']:.0f}"
        wait = f"{r['data_wait_fraction']:.0%}" if "data_wait_fraction" in r else "-"
        print(
            f"{r['model']:6} {r['source']:9} {r['mode']:7} {r['dtype']:8} {r['batch_size']:>5} "
            f"{r['images_per_second']:>9.1f} {spread:>17} {r['step_ms']:>9.2f} {r['compile_s']:>9.2f} "
            f"{wait:>9} {r['peak_memory']['bytes'] / 2**20:>8.0f}"
        )


def low_precision_note(results: list[dict], env: dict) -> str | None:
    """On CPU, compares each low-precision result with its float32 twin and says why."""
    if not env["device"].startswith("cpu"):
        return None
    lines = []
    by_key = {(r["mode"], r["batch_size"], r["dtype"]): r for r in results}
    for r in results:
        if r["dtype"] == "float32":
            continue
        ref = by_key.get((r["mode"], r["batch_size"], "float32"))
        if ref is None:
            continue
        ratio = r["images_per_second"] / ref["images_per_second"]
        verdict = "SLOWER" if ratio < 1 else "faster"
        lines.append(f"{r['mode']} batch {r['batch_size']}: {r['dtype']} is {verdict} than float32 ({ratio:.2f}x)")
    if not lines:
        return None
    why = (
        "XLA:CPU (jaxlib 0.10) runs bf16/f16 matmuls in float32: the compiled step converts the "
        "operands up and the results back down, also on CPUs with AVX512-BF16 or AMX. Low precision "
        "only adds conversions on CPU; it pays off on GPUs (tensor cores)."
    )
    return "\n".join(["", "Low precision on CPU:", *(f"  {line}" for line in lines), f"  Why: {why}"])


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="mlp", choices=model_names())
    p.add_argument("--mode", default="both", choices=("forward", "train", "both"))
    p.add_argument("--batch_sizes", "--batch-sizes", default="1,8,32,128,512")
    p.add_argument("--dtype", default="float32", choices=DTYPES, help="compute dtype (params and loss stay f32)")
    p.add_argument("--source", default="synthetic", choices=("synthetic", "h5", "device"))
    p.add_argument(
        "--data_dir",
        "--data-dir",
        default=None,
        help="PCAM folder for --source h5/device (default: the built-in sample)",
    )
    p.add_argument("--num_workers", "--num-workers", type=int, default=0, help="Grain worker processes for --source h5")
    p.add_argument(
        "--in_memory", "--in-memory", action="store_true", help="data.in_memory for --source h5 (workers 0 only)"
    )
    p.add_argument("--deterministic", default="on", choices=("on", "off"), help="training.deterministic (GPU)")
    p.add_argument(
        "--matmul_precision",
        "--matmul-precision",
        default="default",
        choices=MATMUL_PRECISIONS,
        help="training.matmul_precision",
    )
    p.add_argument("--steps", type=int, default=20, help="steps per timed window")
    p.add_argument("--windows", type=int, default=5, help="timed windows (median and spread over them)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps after compilation")
    p.add_argument("--json", type=output_file, default=None, help="write the results here (its folder is made)")
    args = p.parse_args(argv)
    try:
        args.batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    except ValueError:
        p.error(f"--batch-sizes: expected integers like 1,8,32, got {args.batch_sizes!r}")
    if not args.batch_sizes or min(args.batch_sizes) < 1 or min(args.steps, args.windows) < 1 or args.warmup < 0:
        p.error("batch sizes, --steps and --windows must be >= 1, --warmup >= 0")
    if args.in_memory and (args.source != "h5" or args.num_workers):
        p.error("--in-memory needs --source h5 and --num-workers 0 (workers would each copy the split)")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        return measure(args, argv)
    except UserError as err:  # e.g. a --data_dir that holds no PCAM files: one line, as argparse's
        print(f"{Path(sys.argv[0]).name}: error: {err}", file=sys.stderr)
        return 2


def measure(args, argv) -> int:
    config = model_config(args.model)
    config.training.deterministic = args.deterministic == "on"
    config.training.matmul_precision = args.matmul_precision
    settings = apply_run_settings(config.training)  # before JAX starts its backend
    modes = ("train", "forward") if args.mode == "both" else (args.mode,)
    dtypes = [args.dtype]
    if args.dtype != "float32" and jax.devices()[0].platform == "cpu":
        dtypes.append("float32")  # the reference the CPU note compares against
    env = {**environment(), **settings}
    results = []
    for mode in modes:
        for batch_size in args.batch_sizes:
            for dtype in dtypes:
                r = bench_one(args, config, mode, batch_size, dtype)
                r.update(model=args.model, source=args.source)
                results.append(r)
                print(f"# {mode} batch {batch_size} {dtype}: {r['images_per_second']:.1f} img/s", file=sys.stderr)
    print_table(results, env)
    note = low_precision_note(results, env)
    if note:
        print(note)
    if args.json:
        payload = {"environment": env, "argv": sys.argv[1:] if argv is None else argv, "results": results}
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    prepare_process()
    sys.exit(main())
