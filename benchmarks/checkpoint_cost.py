"""What checkpoint checksums cost: a save (until committed) and a restore of a config's train
state, with the checksum work timed on its own, in alternating rounds.

    python benchmarks/checkpoint_cost.py --config configs/mlp.py --rounds 5 [--json out.json]
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

from jaxpcam.config import base_config
from jaxpcam.config.files import load_config_file
from jaxpcam.core.runtime import prepare_process
from jaxpcam.data.normalization import fixed_normalization
from jaxpcam.data.pcam import IMAGE_SHAPE
from jaxpcam.models import create_model
from jaxpcam.run import integrity
from jaxpcam.training import checkpoint
from jaxpcam.training.schedules import ScheduleState
from jaxpcam.training.state import count_params, create_train_state, make_optimizer


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="configs/mlp.py")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    config = load_config_file(args.config) if args.config else base_config()
    model = create_model(config.model, config.training.dtype)
    state = create_train_state(
        jax.random.key(0), model, make_optimizer(config.training), fixed_normalization(), IMAGE_SHAPE
    )
    nbytes = sum(x.nbytes for x in jax.tree.leaves(state))
    items = {"metrics": {"val_roc_auc": 0.5}, "config": config.to_dict()}
    times = {"save_s": [], "restore_s": [], "checksum_s": [], "verify_s": []}
    with tempfile.TemporaryDirectory() as folder:
        manager = checkpoint.open_manager(Path(folder), config.checkpoint)
        for r in range(args.rounds):
            step_state = state.replace(step=jax.numpy.asarray(r + 1))
            start = time.perf_counter()
            checkpoint.save(manager, step_state, ScheduleState(lr=1e-3), checkpoint.Progress(), config, None, {})
            manager.wait_until_finished()
            times["save_s"].append(time.perf_counter() - start)
            start = time.perf_counter()
            sums = integrity.checksums(step_state, items)
            times["checksum_s"].append(time.perf_counter() - start)
            start = time.perf_counter()
            restored = checkpoint.restore(manager, r + 1, step_state)
            times["restore_s"].append(time.perf_counter() - start)
            start = time.perf_counter()
            integrity.verify(sums, restored.state, items)
            times["verify_s"].append(time.perf_counter() - start)
        manager.close()
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "config": args.config,
        "params": count_params(state.params),
        "state_mb": nbytes / 1e6,
        "device": str(jax.devices()[0]),
        "rounds": args.rounds,
        **{k: {"median": med[k], "min": min(v), "max": max(v)} for k, v in times.items()},
        "checksum_share_of_save": med["checksum_s"] / med["save_s"],
        "verify_share_of_restore": med["verify_s"] / med["restore_s"],
    }
    print(
        f"{args.config}: {result['params']:,} params, state {result['state_mb']:.0f} MB on {result['device']}\n"
        f"  save (to committed) {med['save_s'] * 1e3:.0f} ms, of which checksums {med['checksum_s'] * 1e3:.0f} ms "
        f"({result['checksum_share_of_save']:.0%})\n"
        f"  restore (verified)  {med['restore_s'] * 1e3:.0f} ms, of which verification {med['verify_s'] * 1e3:.0f} ms "
        f"({result['verify_share_of_restore']:.0%})\n"
        f"  medians of {args.rounds} rounds; spread (min-max) save "
        f"{np.min(times['save_s']) * 1e3:.0f}-{np.max(times['save_s']) * 1e3:.0f} ms, "
        f"restore {np.min(times['restore_s']) * 1e3:.0f}-{np.max(times['restore_s']) * 1e3:.0f} ms"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    prepare_process()
    sys.exit(main())
