"""A sweep point's status, from what its run directory records: done, running, failed, ...,
or 'other config' when it was run with a config that changes results (the rules resume uses:
run/keys.py for the keys, run/data_identity.py for the data)."""

import dataclasses
from pathlib import Path

from jaxpcam.data.manifest import manifest_kept_digest
from jaxpcam.run import data_identity
from jaxpcam.run.data_identity import DataVerdict
from jaxpcam.run.keys import changed_keys, result_changes
from jaxpcam.run.lock import in_use
from jaxpcam.run.record import read_metrics, read_record, read_sweep_point, write_sweep_point
from jaxpcam.sweeps.grid import Point


@dataclasses.dataclass(frozen=True)
class OtherConfig:
    """How a point's run differs from the point's config now: {key: [recorded, now]} for the keys
    that change results, and the data verdict behind any data key among them."""

    keys: dict
    data: DataVerdict = DataVerdict.SAME
    files_replaced: bool = False  # files or a manifest changed under an unmoved path: restoring them is the way back

    def __bool__(self) -> bool:
        return bool(self.keys)


def point_epochs(point: Point, run_dir: Path) -> tuple[int, int]:
    """(epochs finished, epochs the point was last trained for). The target is what the run
    recorded (config.json, written as training starts, then sweep_point.json), not the flags of
    the command that asks; the point's config now only for a run that recorded neither. A run
    that stopped early (training.early_stopping_patience) was trained for the epochs it has."""
    target = read_record(run_dir).config.get("training", {})  # damaged: {}, the listing shows every point
    target = target.get("epochs") if isinstance(target, dict) else None
    if not isinstance(target, int):
        target = read_sweep_point(run_dir).get("epochs")
    if not isinstance(target, int):
        target = point.config.training.epochs
    records = read_metrics(run_dir)
    if records and records[-1].get("stopped_early"):
        return len(records), len(records)
    return len(records), target


def other_config(point: Point, run_dir: Path) -> OtherConfig:
    """How the run in ``run_dir`` differs from ``point.config`` in what changes results (what a
    resume refuses): judged by its config.json (written as training starts), else, for a point
    with epochs or checkpoints, by the config its sweep_point.json recorded. Empty when they
    agree or nothing was recorded."""
    saved = read_record(run_dir).config  # damaged: the record's config, if any
    if not saved:
        results = read_metrics(run_dir) or (run_dir / "checkpoints").is_dir()
        saved = read_sweep_point(run_dir).get("config") if results else None
    if not isinstance(saved, dict) or not saved:
        return OtherConfig({})
    now = point.config.to_dict()
    changed = changed_keys(saved, now)
    differing = {k: changed[k] for k in result_changes(saved, now)}
    files = data_identity.files_named_by(now["data"])
    manifest = data_identity.manifest_named_by(now["data"])
    found = data_identity.judge(run_dir, saved, now, files, manifest_kept_digest(manifest) if manifest else None)
    in_place = found.verdict is DataVerdict.OTHER_MANIFEST or (
        found.verdict is DataVerdict.REPLACED and not found.moves
    )
    if found.verdict is DataVerdict.OTHER_MANIFEST:
        differing["data.filter"] = [f"{manifest.name} as trained", f"{manifest} with other images kept"]
    elif found.moves and found.verdict in (DataVerdict.REPLACED, DataVerdict.UNKNOWN):
        differing.update(found.moves)  # another data path: another config unless the same files
    elif found.verdict is DataVerdict.REPLACED and files:  # the same path, other files
        key = "data.digits_file" if now["data"].get("dataset") == "digits" else "data.dir"
        place = now["data"].get(key.split(".")[1]) or "the built-in data"
        differing[key] = [place, f"{place} with other files ({found.differ})"]
    return OtherConfig(differing, found.verdict, in_place and bool(differing))


def point_status(point: Point, run_dir: Path) -> str:
    """From what the point recorded: 'other config' (run with a config that differs from
    ``point.config`` in a key that changes results: other_config; or one training refused for
    this config: refused_by_training), 'done' (every epoch it was
    trained for is in metrics.jsonl, however many the asking command's --config.training.epochs
    says), 'running' (a live process holds its run.lock), 'failed'/'stopped' (the last attempt's
    outcome), 'partial' (some epochs or checkpoints, e.g. a killed 'running'), or 'not started'
    (its outputs are gone)."""
    done, target = point_epochs(point, run_dir)
    last = read_sweep_point(run_dir).get("status")
    if other_config(point, run_dir):
        return "running" if last == "running" and in_use(run_dir) else "other config"
    if refused_by_training(point, run_dir):
        return "other config"
    if done and done >= target:
        return "done"
    if last == "running" and in_use(run_dir):
        return "running"
    if last in ("failed", "stopped"):
        return last
    return "partial" if done or (run_dir / "checkpoints").is_dir() else "not started"


def refused_by_training(point: Point, run_dir: Path) -> bool:
    """Whether training last refused this config here: its checkpoints hold another config that
    neither config.json nor the record names (mark_refused wrote it)."""
    record = read_sweep_point(run_dir)
    refused = record.get("refused_config")
    if record.get("status") != "other config" or not isinstance(refused, dict):
        return False
    return not result_changes(refused, point.config.to_dict())


def _identity(point: Point) -> dict:
    return {"index": point.index, "name": point.name, "values": point.hparams}


def mark_refused(point: Point, run_dir: Path, before: dict, finding: str) -> None:
    """Training refused ``point`` here: the record as it was before this attempt (``before``, as
    read_sweep_point gave it: its config is the run's), marked so that --list and the summary
    never show that run as ``point``'s result. A later attempt with a config training accepts
    writes its own record over it."""
    record = {**_identity(point), **before}
    record.update(status="other config", error=finding, refused_config=point.config.to_dict())
    write_sweep_point(run_dir, record)


def write_status(point: Point, run_dir: Path, status: str, error: str | None = None) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    payload = {**_identity(point), "status": status, "error": error}
    payload["epochs"] = point.config.training.epochs  # what this attempt trains for
    payload["epochs_done"] = len(read_metrics(run_dir))
    payload["config"] = point.config.to_dict()  # what this attempt runs with (other_config)
    write_sweep_point(run_dir, payload)
