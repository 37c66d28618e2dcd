"""Start-up time of the commands: from launching ``python -m jaxpcam.<command>`` to its first line
of output, to the first train step (main) and to its exit, with a cold and a warm compilation
cache.

    python benchmarks/startup.py                      # 3 rounds, a temporary cache and run
    python benchmarks/startup.py --rounds 5 --json startup.json
    python benchmarks/startup.py --models mlp,cnn,resnet   # main's first step for each model

It trains one tiny MLP run on the built-in sample first (1 epoch of 4 steps), then times, per
round: ``main`` (a fresh run, until its first train step is logged, then stopped), ``evaluate
--split valid``, ``predict`` on 20 tiles (.npy), ``export`` and ``report``. Round 1 starts from
an empty compilation cache (cold); later rounds find what earlier ones compiled (warm).
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import numpy as np
from _arguments import model_configs, output_file, positive_int

REPO = Path(__file__).resolve().parents[1]
TINY = ["--config.data.batch_size=32", "--config.training.epochs=1", "--config.checkpoint.every_steps=0"]
FIRST_STEP = "step 1/"  # the progress line after the first train step (log_every_steps=1)


def timed(argv: list[str], env: dict, until: str | None = None) -> dict:
    """Seconds to the first output line, to a line containing ``until`` (then the process is
    stopped) and to the exit."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, *argv], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    first = reached = None
    lines = []
    for line in proc.stdout:
        now = time.perf_counter() - start
        lines.append(line)
        first = now if first is None else first
        if until and until in line:
            reached = now
            proc.kill()
            break
    proc.wait()
    end = time.perf_counter() - start
    if (until is None or reached is None) and proc.returncode != 0:  # killed at its marker: not a failure
        raise SystemExit(f"{' '.join(argv)} failed:\n{''.join(lines[-20:])}")
    return {"first_line": first, "marker": reached, "exit": end}


def to_first_step(model: str, workdir: Path) -> tuple[list[str], str]:
    """A fresh run of configs/<model>.py, timed until its first train step is logged."""
    flags = [*TINY, "--config.training.log_every_steps=1"]
    return ["-m", "jaxpcam.main", "--config", f"configs/{model}.py", "--workdir", str(workdir), *flags], FIRST_STEP


def commands(run: Path, scratch: Path, round_: int, models: list[str]) -> dict[str, tuple[list[str], str | None]]:
    out = scratch / f"preds{round_}.csv"
    mains = {f"main {m} (to first step)": to_first_step(m, scratch / f"fresh-{m}{round_}") for m in models}
    if models == ["mlp"]:
        mains = {"main (to first step)": mains["main mlp (to first step)"]}
    return {
        **mains,
        "evaluate --split valid": (["-m", "jaxpcam.evaluate", "--workdir", str(run), "--split", "valid"], None),
        "predict (20 tiles)": (
            [
                "-m",
                "jaxpcam.predict",
                "--workdir",
                str(run),
                "--input",
                str(scratch / "tiles.npy"),
                "--output",
                str(out),
                "--overwrite",
            ],
            None,
        ),
        "export": (["-m", "jaxpcam.export", "--workdir", str(run), "--overwrite"], None),
        "report": (["-m", "jaxpcam.report", str(run)], None),
    }


def span(values: list) -> str:
    """Median (min-max) of the values that are there."""
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    spread = f" ({min(values):.2f}-{max(values):.2f})" if len(values) > 1 else ""
    return f"{statistics.median(values):.2f}{spread}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=positive_int, default=3, help="round 1 cold, the others warm")
    p.add_argument("--json", type=output_file, help="write the results here")
    p.add_argument(
        "--models",
        type=model_configs,
        default="mlp",
        help="models whose main is timed to its first step: mlp,cnn,resnet",
    )
    args = p.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="jaxpcam-startup-"))
    env = {**os.environ, "JAXPCAM_COMPILE_CACHE": str(scratch / "xla-cache"), "PYTHONUNBUFFERED": "1"}
    try:
        run = scratch / "run"
        timed(["-m", "jaxpcam.main", "--config", "configs/mlp.py", "--workdir", str(run), *TINY], env)
        sys.path.insert(0, str(REPO))
        from jaxpcam.data.pcam import open_split
        from jaxpcam.data.sample import ensure_sample

        valid = open_split(ensure_sample(), "valid")
        np.save(scratch / "tiles.npy", valid.read(np.arange(20)))
        shutil.rmtree(scratch / "xla-cache")  # round 1 compiles from nothing
        results: dict[str, list[dict]] = {}
        for round_ in range(args.rounds):
            for name, (cmd, until) in commands(run, scratch, round_, args.models).items():
                results.setdefault(name, []).append(timed(cmd, env, until))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print("| command | cache | first line s | first step s | exit s |")
    print("|---|---|---:|---:|---:|")
    for name, rows in results.items():
        for label, chosen in (("cold", rows[:1]), (f"warm ({len(rows) - 1} rounds)", rows[1:])):
            if chosen:
                cells = [span([r[key] for r in chosen]) for key in ("first_line", "marker", "exit")]
                print(f"| {name} | {label} | {' | '.join(cells)} |")
    if args.json:
        meta = {"rounds": args.rounds, "models": args.models, "machine": f"{platform.machine()} {os.cpu_count()} CPUs"}
        meta["versions"] = {name: metadata.version(name) for name in ("jax", "jaxlib")}
        meta["units"] = "seconds from launch; round 1 cold cache, later rounds warm; marker: first train step (main)"
        args.json.write_text(json.dumps({**meta, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
