"""Reading a run directory (metrics.jsonl, config.json): what training, evaluation, reports and
sweeps all need, below them all."""

import json
from pathlib import Path

from jaxpcam.errors import UserError
from jaxpcam.files import read_jsonl

METRICS_FILE = "metrics.jsonl"
CONFIG_FILE = "config.json"


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
