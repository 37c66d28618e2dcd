"""Resuming a run whose data moved (a laptop run continued on a cluster, data staged to $TMPDIR):
``data.dir`` or ``data.digits_file`` may name another place when it holds the files the run
trained on, judged by the sampled fingerprints config.json's provenance records (size and 64
blocks of 64 KiB per file: a different file is caught, a few changed bytes are not).

Only the files training reads count: PCAM's train and valid files by name (so the two cannot
swap), a digits file by its content alone (a renamed copy is the same)."""

import dataclasses
import enum
from pathlib import Path

from jaxpcam.core.errors import ConfigChanged
from jaxpcam.core.reporting import log
from jaxpcam.data import digits_cache_path
from jaxpcam.data.pcam import file_fingerprint, split_paths
from jaxpcam.data.sample import sample_dir
from jaxpcam.run.keys import flat_config, moved_paths
from jaxpcam.run.record import CONFIG_FILE, read_record

_TRAINING_SPLITS = ("train", "valid")


class DataVerdict(enum.Enum):
    """Whether the data a config names now is the data a run trained on."""

    SAME = "same"  # the files it trained on, under the paths it trained with
    MOVED = "moved"  # a data path changed, and the same files are there
    REPLACED = "replaced"  # other files than it trained on, under the same or a moved path
    OTHER_MANIFEST = "other manifest"  # data.filter's manifest keeps other images
    UNKNOWN = "unknown"  # config.json does not record the files the run trained on


@dataclasses.dataclass(frozen=True)
class DataJudgement:
    verdict: DataVerdict
    moves: dict  # {data path key: [before, now]} for the paths that changed
    differ: str = ""  # the training files that differ, named


def judge(workdir: Path, saved: dict, current: dict, files: list[Path], kept_now: str | None = None) -> DataJudgement:
    """The one data-identity verdict resume, sweeps, evaluation and report ask: ``saved`` is the
    run's config, ``current`` the config now, ``files`` the training files it names now, and
    ``kept_now`` the digest of the images its data.filter manifest keeps now (None: no filter)."""
    moves = moved_paths(saved, current)
    if _kept_differs(_recorded_kept(workdir), kept_now):
        return DataJudgement(DataVerdict.OTHER_MANIFEST, moves)
    recorded = recorded_files(workdir)
    if recorded is None:
        return DataJudgement(DataVerdict.UNKNOWN, moves)
    if differ := _differing(recorded, files_now(files)):
        return DataJudgement(DataVerdict.REPLACED, moves, differ)
    return DataJudgement(DataVerdict.MOVED if moves else DataVerdict.SAME, moves)


def _training_files(named: dict[str, str]) -> dict[str, str]:
    """{file name: fingerprint} -> the training files' {key: fingerprint} (no test split)."""
    pcam = {p.name for split in _TRAINING_SPLITS for p in split_paths(Path(), split)}
    if not any(name.startswith("camelyonpatch_") for name in named):  # the digits file: one, any name
        return {"the data file": next(iter(named.values()))} if len(named) == 1 else dict(named)
    return {name: fp for name, fp in named.items() if name in pcam}


def recorded_files(workdir: Path) -> dict[str, str] | None:
    """The training files of the run's latest start, as config.json recorded them; None if unknown."""
    files = read_record(workdir).latest_data.get("files")
    try:
        return _training_files({f["name"]: f["fingerprint"] for f in files}) or None
    except (KeyError, TypeError, AttributeError):
        return None


def _recorded_kept(workdir: Path) -> str | None:
    """The digest of the images the run's data.filter manifest kept, as config.json recorded it
    (None for runs without a filter or from before that record)."""
    recorded = read_record(workdir).latest_data.get("filter")
    return recorded.get("kept_blake2b") if isinstance(recorded, dict) else None


def _kept_differs(then: str | None, now: str | None) -> bool:
    return bool(then and now and then != now)


def manifest_named_by(data: dict) -> Path | None:
    """The data.filter manifest a config's ``data`` section names (None when filter is off)."""
    if not data.get("filter"):
        return None
    folder = Path(data["dir"]).expanduser() if data.get("dir") else sample_dir(data.get("sample_version", 1))
    audit = Path(data["audit_dir"]).expanduser() if data.get("audit_dir") else folder / "jaxpcam-audit"
    return audit / "manifest_train.json"


def files_now(files: list[Path]) -> dict[str, str]:
    return _training_files({p.name: file_fingerprint(p) for p in files if p.is_file()})


def files_named_by(data: dict) -> list[Path]:
    """The training files a config's ``data`` section names, found without writing or opening
    any (a sweep judges its points by them before any work); missing ones are left out."""
    if data.get("dataset", "pcam") == "digits":
        path = Path(data["digits_file"]).expanduser() if data.get("digits_file") else digits_cache_path(data["digits"])
        return [path] if path.is_file() else []
    folder = Path(data["dir"]).expanduser() if data.get("dir") else sample_dir(data.get("sample_version", 1))
    return [p for split in _TRAINING_SPLITS for p in split_paths(folder, split) if p.is_file()]


def _differing(recorded: dict[str, str], found: dict[str, str]) -> str:
    """The training files whose fingerprints differ, named ('' when none)."""
    differ = sorted(k for k in recorded.keys() | found.keys() if recorded.get(k) != found.get(k))
    return f"{', '.join(differ[:2])}{f' and {len(differ) - 2} more' if len(differ) > 2 else ''}"


_ADVICE = "resume with the files it trained on, choose another --workdir, or pass --start_fresh"


def check(workdir: Path, saved: dict, current: dict, files: list[Path], data_filter: dict | None = None) -> None:
    """After a resumed run's data opened: a moved data path must hold the files it trained on,
    and so must an unmoved one when config.json records them (the same relative ``data.dir`` from
    another folder, or files replaced in place, are other data under the same name); a
    ``data.filter`` manifest must be the one it trained with."""
    found = judge(workdir, saved, current, files, data_filter.get("kept_blake2b") if data_filter else None)
    if found.verdict is DataVerdict.OTHER_MANIFEST:
        raise ConfigChanged(f"{workdir} holds a run trained with another data.filter manifest: "
                            f"{data_filter['manifest']} keeps other images ({data_filter['kept']}) than it did; "
                            "restore that manifest, choose another --workdir, or pass --start_fresh")  # fmt: skip
    _check_audit_dir(workdir, saved, current, data_filter)
    moves = ", ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in found.moves.items())
    if found.verdict is DataVerdict.UNKNOWN and found.moves:
        raise ConfigChanged(f"{workdir} holds a run trained on data elsewhere ({moves}): config.json, which records "
                            f"the files the run trained on, is missing or unreadable; {_ADVICE}")  # fmt: skip
    if found.verdict is DataVerdict.UNKNOWN:
        log(f"WARNING: {Path(workdir) / CONFIG_FILE} does not record the files the run trained on (missing or "
            "unreadable): the data could not be checked against them")  # fmt: skip
    elif found.verdict is DataVerdict.REPLACED and found.moves:
        raise ConfigChanged(f"{workdir} holds a run trained on data elsewhere ({moves}): other files are there "
                            f"({found.differ}); {_ADVICE}")  # fmt: skip
    elif found.verdict is DataVerdict.REPLACED:
        raise ConfigChanged(f"{workdir} holds a run trained on other files than {_place(current['data'])} "
                            f"holds now ({found.differ} differ from config.json's record): {_ADVICE}")  # fmt: skip
    elif found.verdict is DataVerdict.MOVED:
        log(f"{moves}: the same training files the run trained on (fingerprints as config.json records); resuming")


def _place(data: dict) -> str:
    """The data path a config names, absolute where it was given relative to the current folder."""
    given = data.get("digits_file") if data.get("dataset") == "digits" else data.get("dir")
    if not given:
        return "the built-in data"
    path = Path(given).expanduser()
    return given if path.is_absolute() else f"{given} ({path.absolute()})"


def _check_audit_dir(workdir: Path, saved: dict, current: dict, data_filter: dict | None) -> None:
    """``data.audit_dir`` may name another folder (staged with the data) when config.json can
    vouch for the images its manifest keeps, or when data.filter is off."""
    before, now = (flat_config(c).get("data.audit_dir", "") for c in (saved, current))
    if before == now:
        return
    moved = f"data.audit_dir {before!r} -> {now!r}"
    if data_filter and not _recorded_kept(workdir):
        raise ConfigChanged(f"{workdir}: {moved}, but config.json does not record the images the run's manifest "
                            f"kept; resume with data.audit_dir={before!r}, or pass --start_fresh")  # fmt: skip
    kept = "its manifest keeps the images the run trained on" if data_filter else "unused (data.filter is off)"
    log(f"{moved}: {kept}; resuming")
