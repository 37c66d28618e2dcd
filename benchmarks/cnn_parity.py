"""The seeds' 3-conv CNN (stride-1 3x3 convs, 2x2 max-pool, 128-unit head) in Flax, trained with
jaxpcam's own train step, for a same-model comparison with ``torch_reference.py --model cnn``.

    python benchmarks/cnn_parity.py --batch-size 128

jaxpcam's registered ``cnn`` uses a 4x4 stride-4 stem instead (see benchmarks/README.md).
"""

import argparse
import statistics
import sys
import time

import flax.linen as nn
import jax

from jaxpcam.config import base_config
from jaxpcam.core.runtime import prepare_process
from jaxpcam.data.normalization import fixed_normalization
from jaxpcam.models.cnn import max_pool_2x2
from jaxpcam.training.state import create_train_state, make_optimizer
from jaxpcam.training.steps import jit_eval_step, jit_train_step


class SeedsCNN(nn.Module):
    @nn.compact
    def __call__(self, x, *, train: bool):
        for features in (32, 64, 128):
            x = max_pool_2x2(nn.relu(nn.Conv(features, (3, 3))(x)))
        x = nn.relu(nn.Dense(128)(x.reshape((x.shape[0], -1))))
        return nn.Dense(1)(nn.Dropout(0.2, deterministic=not train)(x))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch_size", "--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--windows", type=int, default=3)
    args = p.parse_args(argv)
    from throughput import synthetic_batch

    key = jax.random.key(0)
    state = create_train_state(key, SeedsCNN(), make_optimizer(base_config().training), fixed_normalization())
    batch = synthetic_batch(jax.random.key(1), args.batch_size)
    start = time.perf_counter()
    train = jit_train_step.lower(state, batch, key).compile()
    compile_s = time.perf_counter() - start
    forward = jit_eval_step.lower(state, batch).compile()
    steps = {"train": lambda s: train(s, batch, key), "forward": lambda s: (s, forward(s, batch))}
    for name, step in steps.items():
        state, out = jax.block_until_ready(step(state))
        rates = []
        for _ in range(args.windows):
            t0 = time.perf_counter()
            for _ in range(args.steps):
                state, out = step(state)
            jax.block_until_ready((state, out))
            rates.append(args.steps * args.batch_size / (time.perf_counter() - t0))
        print(f"seeds' CNN in jaxpcam, {name:7} batch {args.batch_size}: {statistics.median(rates):.1f} img/s "
              f"({min(rates):.1f}-{max(rates):.1f}); train compile {compile_s:.1f} s")  # fmt: skip
    return 0


if __name__ == "__main__":
    prepare_process()
    sys.exit(main())
