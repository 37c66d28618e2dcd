"""Where a compiled train step spends its time: per-operation totals from a jax.profiler trace.

    python benchmarks/profile_step.py --model cnn --batch-size 128
    python benchmarks/profile_step.py --model seeds-cnn        # the seeds' CNN of cnn_parity.py
    python benchmarks/profile_step.py --trace-dir /tmp/trace   # keep the trace for xprof/TensorBoard
    python benchmarks/profile_step.py --model cnn --batch-size 64 --accum-steps 2   # 2 micro-batches of 64

Prints, per XLA operation (fusion, dot, convolution, YNNPACK fusion...), the time per step summed
over the threads (or GPU streams) that ran it, so the biggest rows are what to work on. Names match
the optimized HLO (``jax.jit(...).lower(...).compile().as_text()``). On CPU the per-operation
events need ``--xla_cpu_enable_xprof_traceme=true``, which this script adds to XLA_FLAGS before
JAX starts.
"""

import argparse
import collections
import os
import sys
import tempfile
from pathlib import Path

from jaxpcam.core.runtime import prepare_process  # no JAX import: XLA_FLAGS can still change

RUNTIME_EVENTS = ("ThunkExecutor", "SlinkyThreadPool", "PjitFunction", "$")


def enable_cpu_op_events() -> None:
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_cpu_enable_xprof_traceme=true".strip()


def op_times(profile, steps: int) -> list[tuple[float, str, str]]:
    """(ms per step, plane, operation) for every traced XLA operation, largest first."""
    totals = collections.Counter()
    for plane in profile.planes:
        where = "device" if plane.name.startswith("/device") else "host"
        for line in plane.lines:
            for event in line.events:
                if not event.name.startswith(RUNTIME_EVENTS):
                    totals[(where, event.name)] += event.duration_ns
    return sorted(((ns / 1e6 / steps, where, name) for (where, name), ns in totals.items()), reverse=True)


def build_model(name: str, config):
    """A registered model with its own defaults, or the seeds' CNN of cnn_parity.py."""
    from jaxpcam.models import create_model, model_defaults

    if name == "seeds-cnn":
        from cnn_parity import SeedsCNN  # the script's folder is on sys.path, as for throughput

        return SeedsCNN()
    return create_model({"name": name, **model_defaults(name)})  # the model's own defaults


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="mlp", help="mlp | cnn | resnet | seeds-cnn")
    p.add_argument("--batch_size", "--batch-size", type=int, default=128)
    p.add_argument("--accum_steps", "--accum-steps", type=int, default=1, help="micro-batches per step (k)")
    p.add_argument("--steps", type=int, default=3, help="traced steps")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--trace_dir", "--trace-dir", help="keep the trace here (default: a temporary folder)")
    args = p.parse_args(argv)
    enable_cpu_op_events()
    import time

    import jax
    from throughput import synthetic_batch

    from jaxpcam.config import base_config
    from jaxpcam.data.normalization import fixed_normalization
    from jaxpcam.training.state import create_train_state, make_optimizer
    from jaxpcam.training.steps import jit_train_step

    key = jax.random.key(0)
    config = base_config()
    state = create_train_state(
        key, build_model(args.model, config), make_optimizer(config.training), fixed_normalization()
    )
    batch = synthetic_batch(key, args.batch_size * args.accum_steps)
    step = jit_train_step.lower(state, batch, key, accum_steps=args.accum_steps).compile()
    for _ in range(2):
        state, _ = step(state, batch, key)
    jax.block_until_ready(state)
    trace_dir = Path(args.trace_dir or tempfile.mkdtemp(prefix="jaxpcam-trace-"))
    start = time.perf_counter()
    with jax.profiler.trace(str(trace_dir)):
        for _ in range(args.steps):
            state, _ = step(state, batch, key)
        jax.block_until_ready(state)
    wall_ms = (time.perf_counter() - start) * 1e3 / args.steps
    trace = next(trace_dir.rglob("*.xplane.pb"))
    rows = op_times(jax.profiler.ProfileData.from_file(str(trace)), args.steps)
    what = f"batch {args.batch_size}" + (f" x {args.accum_steps} micro-batches" if args.accum_steps > 1 else "")
    print(f"{args.model} train step, {what}, {jax.devices()[0]}: {wall_ms:.1f} ms/step wall (traced)")
    print(f"{'ms/step':>9}  {'where':6}  operation (summed over threads/streams)")
    for ms, where, name in rows[: args.top]:
        print(f"{ms:9.2f}  {where:6}  {name}")
    print(f"trace: {trace}")
    return 0 if rows else 1


if __name__ == "__main__":
    prepare_process()
    sys.exit(main())
