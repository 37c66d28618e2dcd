"""A sweep's summary: every point with its status, hyper-parameters, best and final metrics and
the champion (Markdown + CSV), and TensorBoard HParams data per finished point."""

import csv
import io
import json
import math
from pathlib import Path

from jaxpcam.core.errors import UserError
from jaxpcam.core.files import write_json_atomic
from jaxpcam.core.metrics import show
from jaxpcam.core.reporting import MetricWriter
from jaxpcam.evaluation.report import read_run
from jaxpcam.run import best
from jaxpcam.run.record import read_metrics, read_run_config
from jaxpcam.sweeps.grid import Point

STATUS_FILE = "sweep_point.json"
HPARAMS_SUFFIX = ".hparams"


def read_record(run_dir: Path) -> dict:
    """The point's sweep_point.json ({} when there is none or it is unreadable)."""
    try:
        record = json.loads((run_dir / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def point_epochs(point: Point, run_dir: Path) -> tuple[int, int]:
    """(epochs finished, epochs the point was last trained for). The target is what the run
    recorded (config.json, written as training starts, then sweep_point.json), not the flags of
    the command that asks; the point's config now only for a run that recorded neither. A run
    that stopped early (training.early_stopping_patience) was trained for the epochs it has."""
    try:
        target = read_run_config(run_dir).get("training", {}).get("epochs")
    except (UserError, AttributeError):  # damaged: the listing still shows every point
        target = None
    if not isinstance(target, int):
        target = read_record(run_dir).get("epochs")
    if not isinstance(target, int):
        target = point.config.training.epochs
    records = read_metrics(run_dir)
    if records and records[-1].get("stopped_early"):
        return len(records), len(records)
    return len(records), target


def other_config(point: Point, run_dir: Path) -> dict[str, list]:
    """{key: [recorded, now]} for the keys that change results (those resume refuses:
    resume.config_differences) in which the run in ``run_dir`` differs from ``point.config``:
    its config.json (written as training starts), else, for a point with epochs or checkpoints,
    the config its sweep_point.json recorded. Empty when they agree or nothing was recorded."""
    from jaxpcam.data.manifest import manifest_kept_digest
    from jaxpcam.run import data_identity as moved_data
    from jaxpcam.training.resume import changed_keys, config_differences

    try:
        saved = read_run_config(run_dir)
    except UserError:  # damaged: the record's config, if any
        saved = {}
    if not isinstance(saved, dict) or not saved:
        results = read_metrics(run_dir) or (run_dir / "checkpoints").is_dir()
        saved = read_record(run_dir).get("config") if results else None
    if not isinstance(saved, dict) or not saved:
        return {}
    now = point.config.to_dict()
    changed = changed_keys(saved, now)
    differing = {k: changed[k] for k in config_differences(saved, now)}
    moved = moved_data.moved_paths(saved, now)  # another data path: the same files, or another config
    files = moved_data.files_named_by(now["data"])
    if moved and moved_data.problem(run_dir, moved, files):
        differing.update(moved)
    elif not moved and files and (differ := moved_data.replaced(run_dir, files)):  # the same path, other files
        key = "data.digits_file" if now["data"].get("dataset") == "digits" else "data.dir"
        place = now["data"].get(key.split(".")[1]) or "the built-in data"
        differing[key] = [place, f"{place} with other files ({differ})"]
    manifest = moved_data.manifest_named_by(now["data"])
    if manifest and moved_data.other_manifest(run_dir, manifest_kept_digest(manifest)):
        differing["data.filter"] = [f"{manifest.name} as trained", f"{manifest} with other images kept"]
    return differing


def point_status(point: Point, run_dir: Path) -> str:
    """From what the point recorded: 'other config' (run with a config that differs from
    ``point.config`` in a key that changes results: other_config), 'done' (every epoch it was
    trained for is in metrics.jsonl, however many the asking command's --config.training.epochs
    says), 'running' (a live process holds its run.lock), 'failed'/'stopped' (the last attempt's
    outcome), 'partial' (some epochs or checkpoints, e.g. a killed 'running'), or 'not started'
    (its outputs are gone)."""
    from jaxpcam.run.lock import in_use

    done, target = point_epochs(point, run_dir)
    last = read_record(run_dir).get("status")
    if other_config(point, run_dir):
        return "running" if last == "running" and in_use(run_dir) else "other config"
    if done and done >= target:
        return "done"
    if last == "running" and in_use(run_dir):
        return "running"
    if last in ("failed", "stopped"):
        return last
    return "partial" if done or (run_dir / "checkpoints").is_dir() else "not started"


def write_status(point: Point, run_dir: Path, status: str, error: str | None = None) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    payload = {"index": point.index, "name": point.name, "values": point.hparams, "status": status, "error": error}
    payload["epochs"] = point.config.training.epochs  # what this attempt trains for
    payload["epochs_done"] = len(read_metrics(run_dir))
    payload["config"] = point.config.to_dict()  # what this attempt runs with (other_config)
    write_json_atomic(run_dir / STATUS_FILE, payload)


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


def write_hparams(point: Point, run_dir: Path) -> None:
    """One HParams session in the run's own folder, so TensorBoard's HParams tab (table and
    parallel coordinates) lines up every point of the sweep under ``--logdir SWEEP_DIR``."""
    for old in run_dir.glob(f"events.out.tfevents.*{HPARAMS_SUFFIX}"):
        old.unlink()
    metrics = {f"hparams/{k}": v for k, v in point_metrics(run_dir).items() if _finite(v)}
    with MetricWriter(run_dir, filename_suffix=HPARAMS_SUFFIX) as writer:
        writer.write_hparams(point.hparams, metrics)


def _finite(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def summarize(
    points: list[Point], run_dirs: list[Path], champion_metric: str, champion_mode: str
) -> tuple[str, str, Point | None]:
    """(markdown, csv, champion point). ``champion_metric`` is a best_*/final_* column, ranked by
    ``champion_mode`` (best.column_mode); ties go to the lowest point index."""
    rows = []
    for point, run_dir in zip(points, run_dirs, strict=True):
        rows.append((point, point_status(point, run_dir), point_metrics(run_dir), point_epochs(point, run_dir)))
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
