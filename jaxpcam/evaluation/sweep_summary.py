"""A sweep's summary: every point with its status, hyper-parameters, best and final metrics and
the champion (Markdown + CSV), and TensorBoard HParams data per finished point. The statuses
come from the sweep (jaxpcam/sweeps/status.py) through the command; this module reads results."""

import csv
import dataclasses
import io
import json
import math
from pathlib import Path

from jaxpcam.core.metrics import show
from jaxpcam.core.reporting import MetricWriter
from jaxpcam.evaluation.report import read_run
from jaxpcam.run import best, outputs
from jaxpcam.run.record import read_metrics

HPARAMS_SUFFIX = ".hparams"


@dataclasses.dataclass(frozen=True)
class PointRow:
    """One point as the summary shows it (``point``: a sweeps.grid.Point)."""

    point: object
    run_dir: Path
    status: str
    epochs: tuple[int, int]  # (finished, trained for)


def point_metrics(run_dir: Path) -> dict[str, float | None]:
    """best_<metric> (at the run's best epoch by its checkpoint.best_metric) and final_<metric>."""
    if not read_metrics(run_dir):
        return {}
    best, names = read_run(run_dir, None, "best")  # the report's metrics for the run's task
    final, _ = read_run(run_dir, names, "final")
    return {
        **{f"best_{m}": best.values.get(m) for m in names},
        "best_epoch": best.info["best_epoch"],
        **{f"final_{m}": final.values.get(m) for m in names},
    }


def write_hparams(point, run_dir: Path) -> None:
    """One HParams session in the run's own folder, so TensorBoard's HParams tab (table and
    parallel coordinates) lines up every point of the sweep under ``--logdir SWEEP_DIR``."""
    for old in run_dir.glob(f"events.out.tfevents.*{HPARAMS_SUFFIX}"):
        old.unlink()
    metrics = {f"hparams/{k}": v for k, v in point_metrics(run_dir).items() if _finite(v)}
    with MetricWriter(run_dir, filename_suffix=HPARAMS_SUFFIX) as writer:
        writer.write_hparams(point.hparams, metrics)


def _finite(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def summarize(points: list[PointRow], champion_metric: str, champion_mode: str) -> tuple[str, str, object | None]:
    """(markdown, csv, champion point). ``champion_metric`` is a best_*/final_* column, ranked by
    ``champion_mode`` (best.column_mode); ties go to the lowest point index."""
    rows = [(r.point, r.status, point_metrics(r.run_dir), r.epochs) for r in points]
    points = [r.point for r in points]
    metric_cols = list(dict.fromkeys(k for _, _, m, _ in rows for k in m))
    keys = list(dict.fromkeys(k for p in points for k in p.values))
    candidates = [
        (p, m[champion_metric]) for p, status, m, _ in rows if status == "done" and _finite(m.get(champion_metric))
    ]
    ranked = [(best.rank(value, p.index, champion_mode), p) for p, value in candidates]
    champion = max(ranked, key=lambda r: r[0])[1] if ranked else None

    head = ["index", "status", "epochs", *keys, *metric_cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow([*head, "champion"])
    for point, status, metrics, (finished, target) in rows:
        values = [f"{finished}/{target}", *(point.hparams.get(k, "") for k in keys)]
        shown = [show(metrics.get(c)) if c in metrics else "-" for c in metric_cols]
        mark = " **(champion)**" if point is champion else ""
        lines.append("| " + " | ".join([f"{point.index}{mark}", status, *map(str, values), *shown]) + " |")
        raw = [metrics.get(c) if _finite(metrics.get(c)) else "" for c in metric_cols]
        writer.writerow([point.index, status, *values, *raw, str(point is champion).lower()])
    done = sum(status == "done" for _, status, _, _ in rows)
    lengths = sorted({epochs[0] for _, status, _, epochs in rows if status == "done"})
    if len(lengths) > 1:  # e.g. some points run with --config.training.epochs=1
        verdict_note = f" Done points trained for different epochs ({', '.join(map(str, lengths))}): compare with care."
    else:
        verdict_note = ""
    others = [str(p.index) for p, status, _, _ in rows if status == "other config"]
    if others:
        verdict_note += (
            f" Point(s) {', '.join(others)} were run with another config (not this sweep's results): "
            "pass the overrides they were run with, or use another --sweep_dir."
        )
    direction = "lowest" if champion_mode == "min" else "highest"
    verdict = (
        f"Champion by {champion_metric} ({direction}): point {champion.index}, {champion.name}"
        if champion
        else f"No champion yet: no finished point has {champion_metric}"
    )
    footer = (
        f"{done}/{len(rows)} points done. {verdict}. best_* at each run's best epoch, final_* at its last; "
        f"epochs finished/trained for.{verdict_note}"
    )
    return "\n".join([*lines, "", footer]), table.getvalue(), champion


# The files the sweep writes in SWEEP_DIR, each with what its versions from before manifests begin with.
SUMMARY_FILES = {"summary.md": "| index |", "summary.csv": "index,", "sweep.json": "{"}
_REMEDY = "move it elsewhere, or choose another --sweep_dir"


def check_summary_files(sweep_dir: Path) -> None:
    """NotOurs when a file of the user's sits where the summary goes: asked before any point
    trains, so the refusal comes at once and not after the training."""
    for name, head in SUMMARY_FILES.items():
        outputs.check_owned(sweep_dir / name, head, _REMEDY)


def write_summary(rows: list[PointRow], sweep_dir: Path, champion_metric: str, champion_mode: str) -> str:
    """SWEEP_DIR/summary.md, summary.csv and sweep.json of every point so far; returns the Markdown."""
    markdown, table, _ = summarize(rows, champion_metric, champion_mode)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    points = json.dumps({"points": [{"index": r.point.index, **r.point.hparams} for r in rows]}, indent=2) + "\n"
    texts = {"summary.md": markdown + "\n", "summary.csv": table, "sweep.json": points}
    check_summary_files(sweep_dir)  # a file of the user's there stops it before any write
    for name, text in texts.items():  # array tasks finish concurrently: run/outputs.py orders them
        outputs.write_owned_text(
            sweep_dir / name, text, "jaxpcam.sweep", legacy_head=SUMMARY_FILES[name], remedy=_REMEDY
        )
    return markdown
