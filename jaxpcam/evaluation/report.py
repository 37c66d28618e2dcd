"""One table across runs: per run its chosen metrics (best or final epoch, plus any evaluation
results), mean and std across runs, and the champion by one metric."""

import dataclasses
import glob
import json
import math
import os
from pathlib import Path

import numpy as np

from jaxpcam import best
from jaxpcam.errors import UserError
from jaxpcam.metrics import show
from jaxpcam.rundir import read_metrics, read_run_config
from jaxpcam.task import task_for

BINARY_METRICS = ("val_roc_auc", "val_f2", "val_accuracy", "val_loss")
MULTICLASS_METRICS = ("val_accuracy", "val_macro_f1", "val_balanced_accuracy", "val_loss")
EVAL_BINARY = ("roc_auc", "pr_auc", "f2", "recall", "precision", "accuracy")
EVAL_MULTICLASS = ("accuracy", "macro_f1", "balanced_accuracy")


def find_runs(patterns: list[str]) -> list[Path]:
    """Run directories (holding metrics.jsonl) named by ``patterns``: paths, globs, or folders
    that contain runs anywhere below them (archived runs are skipped)."""
    runs = []
    for pattern in patterns:
        matches = sorted(glob.glob(os.path.expanduser(pattern))) if glob.has_magic(pattern) else [pattern]
        if not matches:
            raise UserError(f"no path matches {pattern!r}")
        for match in map(Path, matches):
            if (match / "metrics.jsonl").is_file():
                runs.append(match)
            elif match.is_dir():
                found = sorted(p.parent for p in match.rglob("metrics.jsonl") if "archive" not in p.parts)
                runs += found
            else:
                raise UserError(f"{match} is not a run directory (no metrics.jsonl)")
    unique = list(dict.fromkeys(r.resolve() for r in runs))
    if not unique:
        raise UserError(f"no run directories (with metrics.jsonl) under {' '.join(patterns)}")
    return unique


@dataclasses.dataclass(frozen=True)
class RunRow:
    name: str
    info: dict  # experiment, model, seed, epochs, best_epoch
    values: dict[str, float]


def read_run(path: Path, metrics: tuple[str, ...] | None, at: str) -> tuple[RunRow, tuple[str, ...]]:
    config = read_run_config(path)
    records = read_metrics(path)
    if not records:
        raise UserError(f"{path}/metrics.jsonl holds no finished epoch yet")
    multiclass = not task_for(config).binary
    metrics = metrics or (MULTICLASS_METRICS if multiclass else BINARY_METRICS)
    best_key = config.get("checkpoint", {}).get("best_metric", metrics[0])
    mode = config.get("checkpoint", {}).get("best_mode", "max")
    best_epoch = best.best_record(records, best_key, mode) or records[-1]
    chosen = best_epoch if at == "best" else records[-1]
    values = {m: chosen.get(m) for m in metrics}
    for eval_file in sorted((path / "eval").glob("*/metrics.json")):
        result = json.loads(eval_file.read_text())
        for key in EVAL_MULTICLASS if multiclass else EVAL_BINARY:
            values[f"{result['split']}_{key}"] = result["model"].get(key)
    info = {
        "experiment": config.get("experiment_name", ""),
        "model": config.get("model", {}).get("name", ""),
        "seed": config.get("seed", ""),
        "epochs": len(records),
        "best_epoch": best_epoch["epoch"],
    }
    return RunRow(str(path), info, values), metrics


def _finite(value) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


@dataclasses.dataclass(frozen=True)
class Report:
    rows: list[RunRow]
    columns: list[str]
    mean: dict[str, float]
    std: dict[str, float]
    champion: RunRow
    champion_metric: str


def build_report(runs: list[Path], metrics: tuple[str, ...] | None, at: str, champion_metric: str | None) -> Report:
    rows, used = [], None
    for path in runs:
        row, used = read_run(path, metrics, at)
        rows.append(row)
    root = Path(os.path.commonpath([r.name for r in rows])) if len(rows) > 1 else Path(rows[0].name).parent
    rows = [dataclasses.replace(r, name=os.path.relpath(r.name, root)) for r in rows]
    columns = list(dict.fromkeys([*used, *(k for r in rows for k in r.values)]))
    mean, std = {}, {}
    for col in columns:
        values = np.asarray([r.values.get(col) for r in rows if _finite(r.values.get(col))], np.float64)
        mean[col] = float(values.mean()) if len(values) else math.nan
        std[col] = float(values.std(ddof=1)) if len(values) > 1 else math.nan
    champion_metric = champion_metric or columns[0]
    if champion_metric not in columns:
        raise UserError(f"--champion {champion_metric}: not a reported metric; there are {', '.join(columns)}")
    candidates = [r for r in rows if _finite(r.values.get(champion_metric))]
    if not candidates:
        raise UserError(f"no run has a value for {champion_metric}")
    mode = best.mode_of(champion_metric)
    champion = max(candidates, key=lambda r: best.rank(r.values[champion_metric], 0, mode))  # ties: the first
    return Report(rows, columns, mean, std, champion, champion_metric)


_INFO = ("model", "seed", "epochs", "best_epoch")


def to_markdown(report: Report, at: str) -> str:
    head = ["run", *_INFO, *report.columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in report.rows:
        mark = " **(champion)**" if r is report.champion else ""
        cells = [f"{r.name}{mark}", *(str(r.info[k]) for k in _INFO), *(show(r.values.get(c)) for c in report.columns)]
        lines.append("| " + " | ".join(cells) + " |")
    summary = [f"{show(report.mean[c])} ± {show(report.std[c])}" for c in report.columns]
    lines.append("| " + " | ".join([f"mean ± std ({len(report.rows)} runs)", *[""] * len(_INFO), *summary]) + " |")
    direction = "lowest" if best.mode_of(report.champion_metric) == "min" else "highest"
    val_note = (
        "val_* at each run's best epoch (by its checkpoint.best_metric)" if at == "best" else "val_* at the final epoch"
    )
    return "\n".join([
        *lines, "",
        f"Champion by {report.champion_metric} ({direction}): {report.champion.name} "
        f"({show(report.champion.values[report.champion_metric])}). {val_note}; <split>_* from RUN/eval/<split>/.",
    ])  # fmt: skip


def to_csv(report: Report) -> str:
    head = ["run", *_INFO, *report.columns, "champion"]
    lines = [",".join(head)]
    for r in report.rows:
        cells = [r.name, *(str(r.info[k]) for k in _INFO), *(_csv(r.values.get(c)) for c in report.columns)]
        lines.append(",".join([*cells, str(r is report.champion).lower()]))
    for name, stats in (("mean", report.mean), ("std", report.std)):
        lines.append(",".join([name, *[""] * len(_INFO), *(_csv(stats[c]) for c in report.columns), ""]))
    return "\n".join(lines) + "\n"


def _csv(value) -> str:
    return repr(float(value)) if _finite(value) else ""
