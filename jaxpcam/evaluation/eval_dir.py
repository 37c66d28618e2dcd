"""Where evaluation keeps its results in a run directory, each TTA setting apart, so that an
evaluation with ``--tta`` and one without never replace each other:

    RUN/eval/threshold.json       the threshold chosen on valid without TTA (the one export ships)
    RUN/eval/threshold_tta.json   the threshold chosen on valid with --tta
    RUN/eval/<split>/             an evaluation without TTA
    RUN/eval/<split>_tta/         an evaluation with --tta

Before this layout both settings shared ``threshold.json`` and ``<split>/``, each file saying
which setting wrote it (``"tta"``). Such files are read for what they say they are, and
``adopt_older_tta_files`` moves the TTA ones to their own place before an evaluation writes.
No jax here: the report reads it too.
"""

import json
from pathlib import Path

from jaxpcam.errors import UserError
from jaxpcam.reporting import log

EVAL_DIR = "eval"
METRICS_FILE = "metrics.json"
SPLITS = ("test", "train", "valid")  # in the report's column order
TTA_SUFFIX = "_tta"


def threshold_path(workdir: Path, tta: bool) -> Path:
    return Path(workdir) / EVAL_DIR / f"threshold{TTA_SUFFIX if tta else ''}.json"


def results_dir(workdir: Path, split: str, tta: bool) -> Path:
    return Path(workdir) / EVAL_DIR / f"{split}{TTA_SUFFIX if tta else ''}"


def setting_of(record: dict) -> bool:
    """Whether a threshold or metrics record was made with TTA (records from before the key: no)."""
    return bool(record.get("tta", False))


class DamagedRecord(UserError):
    """A threshold or metrics file that is no JSON object; evaluating again rewrites it."""

    def __init__(self, path: Path):
        super().__init__(f"{path} is damaged (not a JSON object); run python -m jaxpcam.evaluate again to rewrite it")
        self.path = path


def _read_json(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except ValueError:
        record = None
    if not isinstance(record, dict):
        raise DamagedRecord(path)
    return record


def find_threshold(workdir: Path, tta: bool, step: int) -> tuple[Path, dict] | None:
    """(its file, the record) of the threshold chosen on valid for checkpoint ``step`` with this
    TTA setting, if stored. A TTA threshold from before this layout (in threshold.json) counts
    as the TTA one; a threshold is never used for the other setting."""
    candidates = [threshold_path(workdir, tta)] + ([threshold_path(workdir, False)] if tta else [])
    for path in candidates:
        record = _read_json(path)
        if record is not None and setting_of(record) == tta and record.get("checkpoint_step") == step:
            return path, record
    return None


def read_evaluations(workdir: Path) -> dict[tuple[str, bool], dict]:
    """Every stored evaluation's metrics.json by (split, tta). An evaluation with TTA from
    before this layout (in ``<split>/``) counts unless ``<split>_tta/`` holds a newer one."""
    found = {}
    for split in SPLITS:
        for folder_tta in (False, True):
            record = _read_json(results_dir(workdir, split, folder_tta) / METRICS_FILE)
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
            record = _read_json(old / METRICS_FILE if old.is_dir() else old)
        except DamagedRecord:  # it says nothing about its setting: left for an evaluation to replace
            continue
        if record is not None and setting_of(record) and not new.exists():
            old.rename(new)
            log(f"moved {old} to {new}: it was made with --tta, before TTA results had their own place")
