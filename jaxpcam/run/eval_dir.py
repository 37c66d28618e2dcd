"""Where evaluation keeps its results in a run directory, each TTA setting apart, so that an
evaluation with ``--tta`` and one without never replace each other:

    RUN/eval/threshold.json       the latest threshold chosen on valid without TTA (the one export
                                  ships and predict decides at, for the checkpoint it names)
    RUN/eval/threshold_tta.json   the latest threshold chosen on valid with --tta
    RUN/eval/thresholds/<step>.json, <step>_tta.json   each checkpoint's, kept
    RUN/eval/<split>/             an evaluation without TTA
    RUN/eval/<split>_tta/         an evaluation with --tta

Thresholds are kept per checkpoint too: evaluating another checkpoint replaces threshold.json
but never changes what predict on the best one decides. Before the TTA layout both settings
shared ``threshold.json`` and ``<split>/``, each file saying
which setting wrote it (``"tta"``). Such files are read for what they say they are, and
``adopt_older_tta_files`` moves the TTA ones to their own place before an evaluation writes.
No jax here: the report reads it too.
"""

import json
import math
from pathlib import Path

from jaxpcam.core.errors import UserError
from jaxpcam.core.reporting import log

EVAL_DIR = "eval"
METRICS_FILE = "metrics.json"
SPLITS = ("test", "train", "valid")  # in the report's column order
TTA_SUFFIX = "_tta"


def threshold_path(workdir: Path, tta: bool) -> Path:
    return Path(workdir) / EVAL_DIR / f"threshold{TTA_SUFFIX if tta else ''}.json"


def checkpoint_threshold_path(workdir: Path, tta: bool, step: int) -> Path:
    return Path(workdir) / EVAL_DIR / "thresholds" / f"{int(step)}{TTA_SUFFIX if tta else ''}.json"


def results_dir(workdir: Path, split: str, tta: bool) -> Path:
    return Path(workdir) / EVAL_DIR / f"{split}{TTA_SUFFIX if tta else ''}"


def written_by_evaluation(name: str) -> bool:
    """What an evaluation from before manifests wrote into <split>/ (run/outputs.py's legacy)."""
    return (
        name in ("predictions.csv", METRICS_FILE, "slices.csv")
        or name.endswith(".png")
        or (name.startswith("events.out.tfevents."))
    )


def setting_of(record: dict) -> bool:
    """Whether a threshold or metrics record was made with TTA (records from before the key: no)."""
    return bool(record.get("tta", False))


THRESHOLD_RULES = ("f2", "recall")  # thresholds.RULES (no numpy/sklearn here)


class DamagedRecord(UserError):
    """A threshold or metrics file that is no JSON object, or not the record evaluation writes
    (a key missing or of the wrong kind, a threshold outside 0..1); evaluating again rewrites it."""

    def __init__(self, path: Path, reason: str = "not a JSON object"):
        super().__init__(f"{path} is damaged ({reason}); run python -m jaxpcam.evaluate again to rewrite it")
        self.path, self.reason = path, reason


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def threshold_problem(record: dict) -> str | None:
    """What makes ``record`` no threshold record as evaluation writes it, or None."""
    value, rule, target = record.get("value"), record.get("rule"), record.get("target_recall")
    if not _number(value) or not 0.0 <= value <= 1.0:
        return f"its value is {json.dumps(value)}, not a number in 0..1"
    if rule not in THRESHOLD_RULES:
        return f"its rule is {json.dumps(rule)}, not one of {', '.join(THRESHOLD_RULES)}"
    if target is not None and not (_number(target) and 0.0 < target <= 1.0):
        return f"its target_recall is {json.dumps(target)}, not a number in (0, 1] or null"
    step = record.get("checkpoint_step")
    if not isinstance(step, int) or isinstance(step, bool):
        return f"its checkpoint_step is {json.dumps(step)}, not a step number"
    if not isinstance(record.get("tta", False), bool):
        return "its tta is not true or false"
    temperature = record.get("temperature")  # the one the threshold's probabilities came from, if any
    if temperature is not None and not (isinstance(temperature, dict) and _number(temperature.get("value"))
                                        and temperature["value"] > 0):  # fmt: skip
        return f"its temperature is {json.dumps(temperature)}, not a record with a positive value"
    return None


def metrics_problem(record: dict) -> str | None:
    """What makes ``record`` no metrics.json as evaluation writes it, or None."""
    model = record.get("model")
    if not isinstance(model, dict):
        return "it has no model results"
    if any(isinstance(v, str | bool) for v in model.values()):
        return "its model results hold values that are no numbers"
    if not isinstance(record.get("tta", False), bool):
        return "its tta is not true or false"
    return None


def _read_json(path: Path, problem=None) -> dict | None:
    """The record in ``path`` (None if there is no file); DamagedRecord if it is no JSON object
    or ``problem(record)`` finds something wrong with it."""
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (ValueError, OSError):
        record = None
    if not isinstance(record, dict):
        raise DamagedRecord(path)
    reason = problem(record) if problem else None
    if reason:
        raise DamagedRecord(path, f"not the record jaxpcam.evaluate writes: {reason}")
    return record


def find_threshold(workdir: Path, tta: bool, step: int) -> tuple[Path, dict] | None:
    """(its file, the record) of the threshold chosen on valid for checkpoint ``step`` with this
    TTA setting, if stored: threshold(_tta).json when it names the checkpoint (the latest chosen;
    a damaged one is DamagedRecord), else the checkpoint's own file in thresholds/. A TTA
    threshold from before this layout (in threshold.json) counts as the TTA one; a threshold is
    never used for the other setting."""
    candidates = [threshold_path(workdir, tta), checkpoint_threshold_path(workdir, tta, step)]
    candidates += [threshold_path(workdir, False)] if tta else []
    for path in candidates:
        record = _read_json(path, threshold_problem)
        if record is not None and setting_of(record) == tta and record.get("checkpoint_step") == step:
            return path, record
    return None


def read_evaluations(workdir: Path) -> dict[tuple[str, bool], dict]:
    """Every stored evaluation's metrics.json by (split, tta). An evaluation with TTA from
    before this layout (in ``<split>/``) counts unless ``<split>_tta/`` holds a newer one."""
    found = {}
    for split in SPLITS:
        for folder_tta in (False, True):
            record = _read_json(results_dir(workdir, split, folder_tta) / METRICS_FILE, metrics_problem)
            if record is None:
                continue
            tta = setting_of(record)
            if tta == folder_tta or (split, tta) not in found:
                found[split, tta] = record
    return found


def adopt_older_tta_files(workdir: Path) -> None:
    """Moves what an evaluation with --tta wrote before this layout (threshold.json and
    ``<split>/`` saying ``"tta": true``) to threshold_tta.json and ``<split>_tta/``, so that an
    evaluation without TTA can take their place without losing them. Where the new place is
    taken (a newer TTA evaluation), the older file stays, is never used for plain predictions,
    and is replaced by the next evaluation without TTA."""
    moves = [(threshold_path(workdir, False), threshold_path(workdir, True))]
    moves += [(results_dir(workdir, s, False), results_dir(workdir, s, True)) for s in SPLITS]
    for old, new in moves:
        try:
            record = _read_json(*((old / METRICS_FILE, metrics_problem) if old.is_dir() else (old, threshold_problem)))
        except DamagedRecord:  # it says nothing about its setting: left for an evaluation to replace
            continue
        if record is not None and setting_of(record) and not new.exists():
            old.rename(new)
            log(f"moved {old} to {new}: it was made with --tta, before TTA results had their own place")
