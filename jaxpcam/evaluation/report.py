"""One table across runs: per run its chosen metrics (best or final epoch, plus any evaluation
results), mean, std and n per group of runs with the same config but the seed (run_groups.py),
and the champion by one metric."""

import csv
import dataclasses
import glob
import io
import math
import os
from pathlib import Path

from jaxpcam.config.migrate import with_defaults
from jaxpcam.core.errors import UserError
from jaxpcam.core.metrics import show
from jaxpcam.core.reporting import log
from jaxpcam.core.task import is_binary_record, task_for
from jaxpcam.evaluation.eval_columns import EVAL_BINARY, EVAL_MULTICLASS, eval_column, evaluation_values
from jaxpcam.evaluation.run_groups import Stat, column_stat, group_configs
from jaxpcam.run import best
from jaxpcam.run.eval_dir import SPLITS
from jaxpcam.run.record import read_metrics, read_record

BINARY_METRICS = ("val_roc_auc", "val_f2", "val_accuracy", "val_loss")
MULTICLASS_METRICS = ("val_accuracy", "val_macro_f1", "val_balanced_accuracy", "val_loss")


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
    config: dict = dataclasses.field(default_factory=dict, repr=False)  # config.json's config
    group: str = ""  # run_groups.group_configs' label
    data: str = ""  # run.record.data_identity: which data files it trained on


def read_run(path: Path, metrics: tuple[str, ...] | None, at: str) -> tuple[RunRow, tuple[str, ...]]:
    record = read_record(path).require(missing_ok=True)
    config, whole = record.config, with_defaults(record.config)  # whole: keys an old config lacks at their defaults
    records = read_metrics(path)
    if not records:
        raise UserError(f"{path}/metrics.jsonl holds no finished epoch yet")
    multiclass = not (task_for(whole).binary if config else is_binary_record(records[-1]))  # no config.json
    metrics = metrics or (MULTICLASS_METRICS if multiclass else BINARY_METRICS)
    best_key, mode = whole["checkpoint"]["best_metric"], whole["checkpoint"]["best_mode"]
    best_epoch = best.best_record(records, best_key, mode) or records[-1]
    chosen = best_epoch if at == "best" else records[-1]
    evaluated = evaluation_values(path, EVAL_MULTICLASS if multiclass else EVAL_BINARY)
    # --metrics may name evaluation columns too (to show them first); a value a run lacks is '-'
    values = {m: evaluated[m] if m in evaluated else chosen[m] for m in metrics if m in evaluated or m in chosen}
    values.update(evaluated)
    info = {
        "experiment": config.get("experiment_name", ""),
        "model": config.get("model", {}).get("name", ""),
        "seed": config.get("seed", ""),
        "epochs": len(records),
        "best_epoch": best_epoch["epoch"],
    }
    return RunRow(str(path), info, values, config, data=record.data_identity()), metrics


DATA_KEYS = ("data.files", "data.sample_version", "data.dataset", "data.digits", "data.valid_fraction")


def _grouped_config(row: RunRow) -> dict:
    """The config a run is grouped by: its own, plus which data files it trained on (data.dir is
    compared only as given or not, so runs on other data under another path would mix)."""
    if not row.config or not row.data:
        return row.config
    # the files decide, not where they are: the built-in sample and a copy of it are one data set
    return {**row.config, "data": {**row.config.get("data", {}), "dir": "", "digits_file": "", "files": row.data}}


def _finite(value) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


@dataclasses.dataclass(frozen=True)
class Report:
    rows: list[RunRow]  # grouped: each group's runs together, groups in order of first appearance
    columns: list[str]
    stats: dict[str, dict[str, Stat]]  # group label -> column -> mean, std, n
    differing: list[str]  # the config keys that tell the groups apart
    champion: RunRow
    champion_metric: str

    def group_rows(self, label: str) -> list[RunRow]:
        return [r for r in self.rows if r.group == label]


def build_report(runs: list[Path], metrics: tuple[str, ...] | None, at: str, champion_metric: str | None) -> Report:
    rows, used = [], None
    for path in runs:
        row, used = read_run(path, metrics, at)
        rows.append(row)
    root = Path(os.path.commonpath([r.name for r in rows])) if len(rows) > 1 else Path(rows[0].name).parent
    labels, differing = group_configs([_grouped_config(r) for r in rows])
    order = list(dict.fromkeys(labels))
    rows = [
        dataclasses.replace(r, name=os.path.relpath(r.name, root), group=g) for r, g in zip(rows, labels, strict=True)
    ]
    rows.sort(key=lambda r: order.index(r.group))  # stable: runs keep their order within a group
    columns = _column_order(used, rows)
    stats = {g: {c: column_stat(r.values.get(c) for r in rows if r.group == g) for c in columns} for g in order}
    _warn_missing(metrics or (), rows)
    valued = [c for c in columns if any(_finite(r.values.get(c)) for r in rows)]
    if not champion_metric and not valued:
        raise UserError(f"no run has a value for any of {', '.join(columns)}")
    champion_metric = champion_metric or valued[0]  # the first column some run has (e.g. only TTA results)
    if champion_metric not in columns:
        raise UserError(f"--champion {champion_metric}: not a reported metric; there are {', '.join(columns)}")
    candidates = [r for r in rows if _finite(r.values.get(champion_metric))]
    if not candidates:
        raise UserError(f"--champion {champion_metric}: no run has a value for it; they have {', '.join(valued)}")
    mode = best.mode_of(champion_metric)
    champion = max(candidates, key=lambda r: best.rank(r.values[champion_metric], 0, mode))  # ties: the first
    return Report(rows, columns, stats, differing, champion, champion_metric)


def _column_order(named: tuple[str, ...], rows: list[RunRow]) -> list[str]:
    """The named columns in their order, then every evaluation column in one order for all runs
    (by split, metric, each _tta column right after its twin), whichever run has which."""
    found = dict.fromkeys(k for r in rows for k in r.values)
    canonical = [
        eval_column(split, key, tta)
        for split in SPLITS
        for key in dict.fromkeys(EVAL_BINARY + EVAL_MULTICLASS)
        for tta in (False, True)
    ]
    rest = [c for c in canonical if c in found] + [c for c in found if c not in canonical]
    return list(dict.fromkeys([*named, *rest]))


def _warn_missing(named: tuple[str, ...], rows: list[RunRow]) -> None:
    """A --metrics name no run has (a typo, or an evaluation not run yet) is said, not just a '-' column."""
    have = dict.fromkeys(k for r in rows for k in r.values)
    for name in (n for n in named if n not in have):
        log(f"WARNING: --metrics {name}: no run has it (a typo, or not evaluated yet?); the runs have "
            f"{', '.join(have)}")  # fmt: skip


def cell(row: RunRow, column: str) -> str:
    """A run's value: '-' when the run has none (e.g. not evaluated), 'undefined' when it has one
    that is no number (an AUC with one class)."""
    return show(row.values[column]) if column in row.values else "-"


def stat_cell(stat: Stat, runs: int) -> str:
    """'0.8500 ± 0.0500', with '(n=K)' when fewer than the group's ``runs`` have the value;
    '-' when none has it (a mean over no value is no number, not 'undefined')."""
    if stat.n == 0:
        return "-"
    text = show(stat.mean) if stat.n == 1 else f"{show(stat.mean)} ± {show(stat.std)}"
    return text if stat.n == runs and runs > 1 else f"{text} (n={stat.n})"


def best_group(report: Report) -> tuple[str, Stat] | None:
    """The group with the best mean of the champion metric, when there are several groups."""
    if len(report.stats) < 2:
        return None
    mode = best.mode_of(report.champion_metric)
    scored = [(g, s[report.champion_metric]) for g, s in report.stats.items() if s[report.champion_metric].n]
    return max(scored, key=lambda gs: best.rank(gs[1].mean, 0, mode)) if scored else None


def notes(report: Report, at: str) -> list[str]:
    """The lines under a table: what was grouped, the champion, where values come from."""
    direction = "lowest" if best.mode_of(report.champion_metric) == "min" else "highest"
    val_note = (
        "val_* at each run's best epoch (by its checkpoint.best_metric)" if at == "best" else "val_* at the final epoch"
    )
    lines = []
    if len(report.stats) > 1:
        differ = ", ".join(report.differing) or "whether config.json exists"
        lines.append(f"The runs differ in {differ}: {len(report.stats)} groups, each with its own mean ± std.")
        group = best_group(report)
        if group:
            lines.append(
                f"Best group by mean {report.champion_metric}: {group[0]} ({show(group[1].mean)}, n={group[1].n})."
            )
        data_keys = [k for k in report.differing if k in DATA_KEYS]
        if data_keys:
            lines.append(f"The groups differ in their data ({', '.join(data_keys)}): their values come from different "
                         "splits, so a better mean need not mean a better model.")  # fmt: skip
    lines.append(
        f"Champion by {report.champion_metric} ({direction}): {report.champion.name} "
        f"({show(report.champion.values[report.champion_metric])}). {val_note}; <split>_* from RUN/eval/<split>/, "
        "<split>_*_tta (evaluated with --tta) from RUN/eval/<split>_tta/."
    )
    lines.append(f"Runs are grouped by config except {IGNORED_NOTE}.")
    return lines


IGNORED_NOTE = (
    "seed, experiment_name, data paths (runs on the same files are one group: data.files) and keys that do not "
    "change results"
)
_INFO = ("model", "seed", "epochs", "best_epoch")


def _mean_label(report: Report, group: str) -> str:
    return f"mean ± std ({len(report.group_rows(group))} runs)"


def to_markdown(report: Report, at: str) -> str:
    """Every column; a group column and one mean row per group when the runs form several."""
    grouped = len(report.stats) > 1
    head = ["run", *(["group"] if grouped else []), *_INFO, *report.columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for group, stats in report.stats.items():
        for r in report.group_rows(group):
            mark = " **(champion)**" if r is report.champion else ""
            cells = [f"{r.name}{mark}", *([group] if grouped else []), *(str(r.info[k]) for k in _INFO)]
            lines.append("| " + " | ".join([*cells, *(cell(r, c) for c in report.columns)]) + " |")
        runs = len(report.group_rows(group))
        summary = [stat_cell(stats[c], runs) for c in report.columns]
        label = [_mean_label(report, group), *([group] if grouped else [])]
        lines.append("| " + " | ".join([*label, *[""] * len(_INFO), *summary]) + " |")
    return "\n".join([*lines, "", *notes(report, at)])


def to_csv(report: Report) -> str:
    """Every column and a group column; per group a mean, a std and an n row."""
    head = ["run", "group", *_INFO, *report.columns, "champion"]
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(head)
    for group, stats in report.stats.items():
        for r in report.group_rows(group):
            cells = [r.name, group, *(str(r.info[k]) for k in _INFO), *(_csv(r.values.get(c)) for c in report.columns)]
            writer.writerow([*cells, str(r is report.champion).lower()])
        for name in ("mean", "std", "n"):
            writer.writerow(
                [name, group, *[""] * len(_INFO), *(_csv(getattr(stats[c], name)) for c in report.columns), ""]
            )
    return table.getvalue()


def _csv(value) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return repr(float(value)) if _finite(value) else ""
