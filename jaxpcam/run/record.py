"""The run record: config.json, metrics.jsonl and sweep_point.json, each read and written here
and nowhere else (eval/ is run/eval_dir.py).

One policy for a file that is missing or damaged: reading never raises. A missing file reads as
an empty record; a damaged one as an empty record whose ``health`` says so. A command that
cannot go on without it asks ``require()``, which says so in one line (UserError); a listing
shows what it has; training rebuilds a damaged config.json and records that it did."""

import dataclasses
import enum
import hashlib
import json
from pathlib import Path

from jaxpcam.core.errors import UserError
from jaxpcam.core.files import json_ready, read_jsonl, write_json_atomic, write_text_atomic
from jaxpcam.data.pcam import file_fingerprint

METRICS_FILE = "metrics.jsonl"
CONFIG_FILE = "config.json"
SWEEP_POINT_FILE = "sweep_point.json"


class Health(enum.Enum):
    OK = "ok"
    MISSING = "missing"
    DAMAGED = "damaged"  # not the JSON jaxpcam writes


@dataclasses.dataclass(frozen=True)
class RunRecord:
    """config.json as read: the config in effect, the provenance of the run's first start, one
    entry per resumption (each with its own provenance), and whether it was rebuilt."""

    path: Path
    health: Health
    config: dict = dataclasses.field(default_factory=dict)
    provenance: dict | None = None
    resumptions: tuple[dict, ...] = ()
    rebuilt: bool = False  # written anew after the earlier one was unreadable: its history is lost

    def require(self, missing_ok: bool = False) -> "RunRecord":
        """The record, or one line saying why there is none (``missing_ok``: only a damaged
        file is refused; a missing one reads as empty)."""
        if self.health is Health.DAMAGED:
            raise UserError(f"{self.path} is damaged (not the JSON jaxpcam writes)")
        if self.health is Health.MISSING and not missing_ok:
            raise UserError(f"{self.path.parent} has no {CONFIG_FILE}")
        return self

    @property
    def starts(self) -> list[dict]:
        """The provenance of each start: the first, then each resumption."""
        firsts = [self.provenance] if isinstance(self.provenance, dict) else []
        return [*firsts, *(r["provenance"] for r in self.resumptions if isinstance(r.get("provenance"), dict))]

    @property
    def latest_data(self) -> dict:
        """The data record of the run's latest start (the start its latest checkpoints come
        from): files, filter, dir; {} when not recorded."""
        data = self.starts[-1].get("data") if self.starts else None
        return data if isinstance(data, dict) else {}

    def files_by_name(self) -> dict[str, list[dict]]:
        """By file name, every data file record of every start."""
        files = [f for start in self.starts for f in _file_list(start.get("data"))]
        return {f["name"]: [g for g in files if g["name"] == f["name"]] for f in files}

    def data_identity(self) -> str:
        """A short name for the data files the run last trained on (their names and
        fingerprints; a PCAM test split is not trained on): the same for a copy of the files
        elsewhere, '' when not recorded."""
        named = sorted(f"{f['name']}:{f['fingerprint']}" for f in _file_list(self.latest_data))
        named = [n for n in named if "_split_test_" not in n]
        return hashlib.blake2b("|".join(named).encode(), digest_size=4).hexdigest() if named else ""


def _file_list(data) -> list[dict]:
    files = data.get("files") if isinstance(data, dict) else None
    ok = isinstance(files, list) and all(isinstance(f, dict) and {"name", "fingerprint"} <= f.keys() for f in files)
    return files if ok else []


def read_record(workdir: Path) -> RunRecord:
    """config.json of ``workdir``, as a value whatever state the file is in."""
    path = Path(workdir) / CONFIG_FILE
    if not path.is_file():
        return RunRecord(path, Health.MISSING)
    try:
        raw = json.loads(path.read_text())
        config, resumptions = raw["config"], raw.get("resumptions") or []
        if not isinstance(config, dict) or not isinstance(resumptions, list):
            raise TypeError
        resumptions = tuple(r for r in resumptions if isinstance(r, dict))
        return RunRecord(path, Health.OK, config, raw.get("provenance"), resumptions, bool(raw.get("rebuilt")))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return RunRecord(path, Health.DAMAGED)


def write_record(workdir: Path, config: dict, provenance: dict, resumption: dict | None) -> Health:
    """Writes config.json: the config in effect, the provenance of the run's first start, and one
    entry per resumption (``resumption`` is None for a fresh start, else {"from_step": ...,
    "changed": {...}}). A resumption whose earlier record is damaged or missing writes a record
    marked ``rebuilt``: the first start's provenance is lost (null, never the resumption's in its
    place) and the resumption is its one entry. Returns the earlier record's health."""
    earlier = read_record(workdir)
    if resumption is None:
        payload = {"config": config, "provenance": provenance, "resumptions": []}
    elif earlier.health is not Health.OK or (earlier.provenance is None and not earlier.rebuilt):
        payload = {
            "config": config,
            "rebuilt": {
                "from_step": resumption.get("from_step"),
                "earlier": earlier.health.value,
                "note": "config.json was rebuilt on this resumption: the first start's provenance and any "
                "earlier resumptions are lost; 'resumptions' holds only the one that rebuilt it",
            },
            "provenance": None,
            "resumptions": [{**resumption, "provenance": provenance}],
        }
    else:
        raw = json.loads(earlier.path.read_text())
        payload = {
            **raw,
            "config": config,
            "resumptions": [*earlier.resumptions, {**resumption, "provenance": provenance}],
        }
    write_json_atomic(earlier.path, payload)
    return earlier.health


def file_record(path: Path) -> dict:
    """How the record names a data file: its name, absolute path (as the user named it, links
    kept), size and sampled fingerprint."""
    path = Path(path)
    return {
        "name": path.name,
        "path": str(path.absolute()),
        "bytes": path.stat().st_size,
        "fingerprint": file_fingerprint(path),
    }


def read_metrics(workdir: Path) -> list[dict]:
    """The finished epochs' records, in order; none if the run has none yet (a damaged line is a
    UserError naming the file and line)."""
    return read_jsonl(Path(workdir) / METRICS_FILE)


def append_metrics(workdir: Path, record: dict) -> None:
    """One epoch's line of metrics.jsonl (process 0 only)."""
    with open(Path(workdir) / METRICS_FILE, "a") as f:
        f.write(json.dumps(json_ready(record)) + "\n")


def rewrite_metrics(workdir: Path, records) -> None:
    """metrics.jsonl as exactly ``records`` (a resumed checkpoint's history of finished epochs)."""
    write_text_atomic(Path(workdir) / METRICS_FILE, "".join(json.dumps(r) + "\n" for r in records))


def read_sweep_point(run_dir: Path) -> dict:
    """The point's sweep_point.json ({} when there is none or it is unreadable: a listing still
    shows every point)."""
    try:
        record = json.loads((Path(run_dir) / SWEEP_POINT_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def write_sweep_point(run_dir: Path, payload: dict) -> None:
    write_json_atomic(Path(run_dir) / SWEEP_POINT_FILE, payload)
