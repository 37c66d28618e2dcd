"""Reading a run directory (metrics.jsonl, config.json): what training, evaluation, reports and
sweeps all need, below them all."""

import hashlib
import json
from pathlib import Path

from jaxpcam.core.errors import UserError
from jaxpcam.core.files import read_jsonl

METRICS_FILE = "metrics.jsonl"
CONFIG_FILE = "config.json"

# Keys that change how a run is carried out (logging, checkpoints kept, data loading), not what
# it learns: a run may resume with them changed (training/resume.py), and the report compares
# runs regardless of them.
NEUTRAL_KEYS = frozenset(
    {
        "training.log_every_steps",
        "data.num_workers",
        "data.prefetch_batches",
        "data.in_memory",
        "data.placement",
        "data.eval_batch_size",
        "checkpoint.keep",
        "checkpoint.every_steps",
    }
)


def read_metrics(workdir: Path) -> list[dict]:
    """The finished epochs' records, in order; none if the run has none yet."""
    return read_jsonl(Path(workdir) / METRICS_FILE)


def read_run_config(workdir: Path) -> dict:
    """The config of config.json ({} when there is none); a damaged file is one line."""
    path = Path(workdir) / CONFIG_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())["config"]
    except (ValueError, KeyError, TypeError):
        raise UserError(f"{path} is damaged (not the JSON jaxpcam writes)") from None


def latest_data_record(workdir: Path) -> dict:
    """config.json's provenance record of the data of the run's latest start (the start its
    latest checkpoints come from): files, filter, dir; {} when missing or not as jaxpcam writes it."""
    try:
        record = json.loads((Path(workdir) / CONFIG_FILE).read_text())
        data = (record.get("resumptions") or [record])[-1]["provenance"]["data"]
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError):
        return {}
    return data if isinstance(data, dict) else {}


def data_identity(workdir: Path) -> str:
    """A short name for the data files the run last trained on (their names and fingerprints in
    config.json's provenance; a PCAM test split is not trained on): the same for a copy of the
    files elsewhere, '' when not recorded."""
    try:
        files = latest_data_record(workdir)["files"]
        named = sorted(f"{f['name']}:{f['fingerprint']}" for f in files if "_split_test_" not in f["name"])
    except (KeyError, TypeError, AttributeError):
        return ""
    return hashlib.blake2b("|".join(named).encode(), digest_size=4).hexdigest()


def flat_config(config: dict, prefix: str = "") -> dict:
    """A config.json config as {dotted key: value}, the keys ``--config.x=y`` names; lists
    (JSON's tuples) become tuples, so values compare and hash."""
    out = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(flat_config(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = tuple(value) if isinstance(value, list) else value
    return out
