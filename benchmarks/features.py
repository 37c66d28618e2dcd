"""What each training feature costs, end to end through the real training loop.

    python benchmarks/features.py                          # mlp and cnn, every row, 3 rounds
    python benchmarks/features.py --models cnn --steps 32 --rounds 5 --json features.json --markdown features.md

For each model (configs/<model>.py) it trains the plain config, then each feature alone, then the
combination of configs/pcam_recipe.py's data and training keys, with ``train_and_evaluate`` on a
generated PCAM-format data set of exactly ``--steps`` batches (2 epochs; the second epoch's
``images_per_second`` from metrics.jsonl, so compilation is left out), and times evaluation of
the plain run's valid split without and with --tta. Rounds alternate (every row once per round,
in a rotated order) so a load that comes and goes hits every row alike; each row is reported as
its time per image relative to plain in the same round (above 1: slower): median, min and max
over the rounds.
Gradient accumulation keeps the effective batch: k micro-batches of batch/k against plain batch.
"""

import argparse
import ast
import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import jax
from _arguments import model_configs, output_file, positive_int

from jaxpcam.config import base_config
from jaxpcam.config.checks import validate
from jaxpcam.config.files import load_config_file
from jaxpcam.core.errors import UserError
from jaxpcam.core.reporting import captured_log
from jaxpcam.core.runtime import prepare_process
from jaxpcam.data.sample import write_sample
from jaxpcam.evaluation.data import open_eval_split
from jaxpcam.evaluation.evaluate import EvalOptions, predict_split
from jaxpcam.evaluation.loading import load_run
from jaxpcam.training.loop import train_and_evaluate

REPO = Path(__file__).resolve().parents[1]
RECIPE_SKIPPED = {"data.batch_size", "data.num_workers", "training.epochs", "training.early_stopping_patience"}


def feature_rows(batch_size: int, recipe: dict) -> dict[str, dict]:
    """Row name -> config overrides (flattened keys), plain first."""
    rows = {
        "plain": {},
        "stain_augment 0.2": {"data.stain_augment": 0.2},
        "ema_decay 0.999": {"training.ema_decay": 0.999},
        "warmup + cosine": {"training.scheduler": "cosine", "training.warmup_steps": 4},
        "grad_clip_norm 1.0": {"training.grad_clip_norm": 1.0},
        "adamw, weight_decay 1e-4": {"training.optimizer": "adamw", "training.weight_decay": 1e-4},
        "dtype bfloat16": {"training.dtype": "bfloat16"},
        "placement host": {"data.placement": "host"},
        "placement device": {"data.placement": "device"},
    }
    for k in (2, 4):
        if batch_size % k == 0:
            rows[f"grad_accum_steps {k} (batch {batch_size // k})"] = {
                "data.batch_size": batch_size // k,
                "training.grad_accum_steps": k,
            }
    rows["pcam_recipe keys"] = recipe
    return rows


def recipe_overrides() -> dict:
    """configs/pcam_recipe.py's data and training values that differ from the base config."""
    base = flat(base_config().to_dict())
    recipe = flat(load_config_file(str(REPO / "configs" / "pcam_recipe.py")).to_dict())
    return {
        key: value
        for key, value in recipe.items()
        if key.split(".")[0] in ("data", "training") and key not in RECIPE_SKIPPED and value != base.get(key)
    }


def flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def run_config(model: str, data_dir: Path, batch_size: int, overrides: dict, extra: dict):
    config = load_config_file(str(REPO / "configs" / f"{model}.py"))
    values = {"data.dir": str(data_dir), "data.batch_size": batch_size, "training.epochs": 2}
    values.update({"training.log_every_steps": 10**6, "checkpoint.every_steps": 0, **extra, **overrides})
    config.update_from_flattened_dict(values)
    validate(config)
    return config


def train_rate(config, workdir: Path) -> float:
    """The second epoch's images per second as the loop measured it (metrics.jsonl)."""
    with captured_log():
        train_and_evaluate(config, workdir)
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    return records[-1]["images_per_second"]


def eval_seconds(workdir: Path, tta: bool) -> float:
    with captured_log():
        run = load_run(workdir, "latest")
        split = open_eval_split(run.config, "valid")
        predict_split(run, split, EvalOptions(tta=tta))  # compiles: not timed
        start = time.perf_counter()
        predict_split(run, split, EvalOptions(tta=tta))
    return time.perf_counter() - start


def measure_model(model: str, args, data_dir: Path, scratch: Path) -> list[dict]:
    rows = {name: o for name, o in feature_rows(args.batch_size, recipe_overrides()).items() if selected(name, args)}
    configs = {name: run_config(model, data_dir, args.batch_size, o, args.extra) for name, o in rows.items()}
    rates = {name: [] for name in configs}
    evals = {"plain": [], "tta": []}
    for round_ in range(args.rounds):
        names = list(configs)
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            workdir = scratch / f"{model}-round{round_}-row{list(configs).index(name)}"
            rates[name].append(train_rate(configs[name], workdir))
            if name == "plain":
                for kind in (("plain", False), ("tta", True))[:: 1 if round_ % 2 else -1]:
                    evals[kind[0]].append(eval_seconds(workdir, kind[1]))
            shutil.rmtree(workdir, ignore_errors=True)
    costs = {name: [1 / rate for rate in rates[name]] for name in rates}  # seconds per image
    results = [row(model, name, "train img/s", rates[name], costs[name], costs["plain"], rows[name]) for name in rates]
    results.append(row(model, "evaluate --tta", "eval s (valid)", evals["tta"], evals["tta"], evals["plain"], {}))
    return results


def selected(name: str, args) -> bool:
    return name == "plain" or not args.rows or any(part in name for part in args.rows.split(","))


def row(model: str, name: str, unit: str, values: list, costs: list, plain_costs: list, overrides: dict) -> dict:
    """``costs``: time per image (or per pass), so a ratio above 1 is slower than plain."""
    ratios = [c / p for c, p in zip(costs, plain_costs, strict=True)]
    return {
        "model": model,
        "row": name,
        "overrides": overrides,
        "unit": unit,
        "values": values,
        "time_vs_plain": {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)},
    }


def markdown(results: list[dict], rounds: int) -> str:
    lines = [
        f"| model | row | measure | median | time vs plain: median (min-max, {rounds} rounds) |",
        "|---|---|---|---:|---|",
    ]
    for r in results:
        ratio = r["time_vs_plain"]
        lines.append(
            f"| {r['model']} | {r['row']} | {r['unit']} | {statistics.median(r['values']):,.2f} | "
            f"{ratio['median']:.2f}x ({ratio['min']:.2f}-{ratio['max']:.2f}) |"
        )
    return "\n".join(lines) + "\n"


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--models", type=model_configs, default="mlp,cnn", help="configs/<model>.py for each, comma-separated"
    )
    p.add_argument(
        "--batch_size", "--batch-size", type=positive_int, default=128, help="plain batch (= effective batch)"
    )
    p.add_argument(
        "--steps", type=positive_int, default=16, help="train steps per epoch (the data set has this many batches)"
    )
    p.add_argument("--valid", type=positive_int, default=1024, help="valid split size (evaluation rows)")
    p.add_argument("--rounds", type=positive_int, default=3)
    p.add_argument("--rows", default="", help="only rows whose name contains one of these (comma-separated)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="an override for every run")
    p.add_argument("--json", type=output_file, help="write the results here")
    p.add_argument("--markdown", type=output_file, help="write the Markdown table here")
    args = p.parse_args(argv)
    if any("=" not in item for item in args.set):
        p.error(f"--set takes KEY=VALUE, got {next(item for item in args.set if '=' not in item)!r}")
    args.extra = {key: literal(value) for key, value in (item.split("=", 1) for item in args.set)}
    for model in args.models:  # before any measuring: a bad key or value is one line
        try:
            run_config(model, REPO, args.batch_size, {}, args.extra)
        except (KeyError, TypeError, ValueError, UserError) as err:
            p.error(f"--set {', '.join(args.set)} on configs/{model}.py: {str(err).strip(chr(39))}")
    return args


def literal(text: str):
    """A Python literal (number, tuple, bool) as such, anything else as the string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def main(argv=None) -> int:
    args = parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="jaxpcam-features-"))
    try:
        data_dir = scratch / "data"
        write_sample(data_dir, {"train": args.steps * args.batch_size, "valid": args.valid, "test": 32}, seed=7)
        results = [r for model in args.models for r in measure_model(model, args, data_dir, scratch)]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    table = markdown(results, args.rounds)
    print(table, end="")
    environment = {"device": str(jax.devices()[0]), "jax": jax.__version__, "machine": platform.platform()}
    settings = {k: v for k, v in vars(args).items() if k not in ("json", "markdown")}
    if args.json:
        args.json.write_text(json.dumps({"environment": environment, "settings": settings, "results": results}))
    if args.markdown:
        args.markdown.write_text(table)
    return 0


if __name__ == "__main__":
    prepare_process()
    sys.exit(main())
