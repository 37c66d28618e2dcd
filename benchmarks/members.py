"""Several seeds in one program against the same seeds one after another, wall time from the
command to the last member's result.

    python benchmarks/members.py --config configs/smlp_digits.py --seeds 42,43,44 --rounds 3
    python benchmarks/members.py --config configs/mlp.py --set training.epochs=5 --rounds 2 --json mlp.json
    python benchmarks/members.py --config configs/smlp_digits.py --variants sweep,dispatch8 --rounds 3

Each round runs every variant once, in a rotated order (a load that comes and goes hits every
variant alike), each in a fresh folder and a fresh process, and reports its time relative to
``sweep`` (``python -m jaxpcam.sweep --all``: the seeds one after another in one process) in the
same round: median, min and max over the rounds. Variants:

- ``sweep``: ``jaxpcam.sweep --all`` over a sweep file of the seeds (the baseline);
- ``mains``: one ``python -m jaxpcam.main`` per seed, one after another (what a shell loop does);
- ``vectorized``: ``jaxpcam.sweep --all --vectorize`` (one compiled step for all seeds);
- ``dispatchK``: ``sweep`` with ``training.steps_per_dispatch=K``;
- ``vectorizedK``: ``vectorized`` with ``training.steps_per_dispatch=K``.

Every process gets the same fresh, empty compilation cache folder per round and variant, so no
variant profits from another's compiles.
"""

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _arguments import output_file, positive_int

REPO = Path(__file__).resolve().parents[1]
SWEEP_FILE = """
from jaxpcam.config.files import load_config_file


def get_config():
    return load_config_file({config!r})


def get_sweep():
    return {{"seed": {seeds!r}}}
"""


def commands(variant: str, config: str, seeds: list[int], folder: Path, overrides: list[str]) -> list[list[str]]:
    """The command lines one variant runs, one after another, in ``folder``."""
    sweep_file = folder / "seeds_sweep.py"
    sweep_file.write_text(SWEEP_FILE.format(config=str(REPO / config), seeds=seeds))
    sweep = [sys.executable, "-m", "jaxpcam.sweep", f"--config={sweep_file}", f"--sweep_dir={folder / 'runs'}", "--all"]
    if variant == "mains":
        main = [sys.executable, "-m", "jaxpcam.main", f"--config={REPO / config}", *overrides]
        return [[*main, f"--config.seed={s}", f"--workdir={folder / 'runs' / str(s)}"] for s in seeds]
    extra = []
    if variant.startswith("vectorized"):
        extra.append("--vectorize")
    digits = variant.removeprefix("vectorized").removeprefix("dispatch").removeprefix("sweep")
    if digits:
        extra.append(f"--config.training.steps_per_dispatch={int(digits)}")
    return [[*sweep, *extra, *overrides]]


def time_variant(variant: str, args, round_folder: Path) -> float:
    folder = round_folder / variant
    folder.mkdir(parents=True)
    env = {**os.environ, "JAXPCAM_COMPILE_CACHE": str(folder / "xla-cache")}
    overrides = [f"--config.{item}" for item in args.set]
    start = time.perf_counter()
    for argv in commands(variant, args.config, args.seeds, folder, overrides):
        done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"{variant} failed ({done.returncode}): {done.stderr[-2000:]}")
    return time.perf_counter() - start


def parse(argv: list[str] | None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/smlp_digits.py", help="a config file (relative to the repository)")
    parser.add_argument("--seeds", type=seed_list, default="42,43,44", help="comma-separated seeds")
    parser.add_argument("--set", action="append", default=[], help="a config override KEY=VALUE (repeatable)")
    parser.add_argument(
        "--variants",
        default="sweep,vectorized",
        help="comma-separated, sweep first: sweep, mains, vectorized, dispatchK, vectorizedK (K steps per dispatch)",
    )
    parser.add_argument("--rounds", type=positive_int, default=3)
    parser.add_argument("--json", type=output_file, default=None, help="write the results here")
    args = parser.parse_args(argv)
    args.variants = args.variants.split(",")
    unknown = [v for v in args.variants if not VARIANT.fullmatch(v)]
    if unknown:
        parser.error(f"--variants: unknown {', '.join(unknown)} (sweep, mains, vectorized, dispatchK, vectorizedK)")
    if args.variants[0] != "sweep":
        parser.error("--variants must start with sweep, the baseline")
    if not (REPO / args.config).is_file():
        parser.error(f"--config: no file {args.config} in {REPO}")
    return args


VARIANT = re.compile(r"sweep|mains|vectorized(\d+)?|dispatch\d+")


def seed_list(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected whole numbers like 42,43,44, got {text!r}") from None
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"a seed given twice in {text!r}")
    return seeds


def summarize(times: dict[str, list[float]]) -> dict:
    rounds = len(times["sweep"])
    out = {}
    for variant, values in times.items():
        ratios = [values[r] / times["sweep"][r] for r in range(rounds)]
        out[variant] = {
            "seconds": values,
            "vs_sweep": {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)},
        }
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    times = {v: [] for v in args.variants}
    with tempfile.TemporaryDirectory(prefix="jaxpcam-members-") as tmp:
        for r in range(args.rounds):
            order = args.variants[r % len(args.variants) :] + args.variants[: r % len(args.variants)]
            for variant in order:
                seconds = time_variant(variant, args, Path(tmp) / f"round{r}")
                times[variant].append(seconds)
                print(f"round {r + 1}: {variant} {seconds:.1f} s", flush=True)
    results = summarize(times)
    for variant, row in results.items():
        ratio = row["vs_sweep"]
        print(f"{variant:14} {statistics.median(row['seconds']):7.1f} s  "
              f"{ratio['median']:.2f}x sweep ({ratio['min']:.2f}-{ratio['max']:.2f})")  # fmt: skip
    if args.json:
        meta = {"config": args.config, "seeds": args.seeds, "set": args.set, "rounds": args.rounds}
        meta["machine"] = f"{platform.machine()} {os.cpu_count()} CPUs"
        args.json.write_text(json.dumps({**meta, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
