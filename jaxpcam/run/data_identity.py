"""Resuming a run whose data moved (a laptop run continued on a cluster, data staged to $TMPDIR):
``data.dir`` or ``data.digits_file`` may name another place when it holds the files the run
trained on, judged by the sampled fingerprints config.json's provenance records (size and 64
blocks of 64 KiB per file: a different file is caught, a few changed bytes are not).

Only the files training reads count: PCAM's train and valid files by name (so the two cannot
swap), a digits file by its content alone (a renamed copy is the same)."""

from pathlib import Path

from jaxpcam.core.errors import ConfigChanged
from jaxpcam.core.reporting import log
from jaxpcam.data.pcam import file_fingerprint, split_paths
from jaxpcam.run.record import flat_config, latest_data_record

DATA_PATH_KEYS = ("data.dir", "data.digits_file")
MOVABLE_KEYS = (*DATA_PATH_KEYS, "data.audit_dir")  # the audit folder: judged by the images its manifest keeps
_TRAINING_SPLITS = ("train", "valid")


def _training_files(named: dict[str, str]) -> dict[str, str]:
    """{file name: fingerprint} -> the training files' {key: fingerprint} (no test split)."""
    pcam = {p.name for split in _TRAINING_SPLITS for p in split_paths(Path(), split)}
    if not any(name.startswith("camelyonpatch_") for name in named):  # the digits file: one, any name
        return {"the data file": next(iter(named.values()))} if len(named) == 1 else dict(named)
    return {name: fp for name, fp in named.items() if name in pcam}


def recorded_files(workdir: Path) -> dict[str, str] | None:
    """The training files of the run's latest start, as config.json recorded them; None if unknown."""
    try:
        files = latest_data_record(workdir)["files"]
        return _training_files({f["name"]: f["fingerprint"] for f in files}) or None
    except (KeyError, TypeError, AttributeError):
        return None


def _recorded_kept(workdir: Path) -> str | None:
    """The digest of the images the run's data.filter manifest kept, as config.json recorded it
    (None for runs without a filter or from before that record)."""
    recorded = latest_data_record(workdir).get("filter")
    return recorded.get("kept_blake2b") if isinstance(recorded, dict) else None


def other_manifest(workdir: Path, kept_now: str | None) -> bool:
    """Whether the data.filter manifest keeps other images than the run trained on (by the kept
    indices' digest config.json records; unknown for runs from before that record: False)."""
    return _kept_differs(_recorded_kept(workdir), kept_now)


def _kept_differs(then: str | None, now: str | None) -> bool:
    return bool(then and now and then != now)


def manifest_named_by(data: dict) -> Path | None:
    """The data.filter manifest a config's ``data`` section names (None when filter is off)."""
    from jaxpcam.data.sample import sample_dir

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
    from jaxpcam.data import digits_cache_path
    from jaxpcam.data.sample import sample_dir

    if data.get("dataset", "pcam") == "digits":
        path = Path(data["digits_file"]).expanduser() if data.get("digits_file") else digits_cache_path(data["digits"])
        return [path] if path.is_file() else []
    folder = Path(data["dir"]).expanduser() if data.get("dir") else sample_dir(data.get("sample_version", 1))
    return [p for split in _TRAINING_SPLITS for p in split_paths(folder, split) if p.is_file()]


def moved_paths(saved: dict, current: dict) -> dict[str, list]:
    """{key: [before, now]} for the data paths that changed (a saved config lacking one: '')."""
    before, now = flat_config(saved), flat_config(current)
    return {k: [before.get(k, ""), now.get(k, "")] for k in DATA_PATH_KEYS if before.get(k, "") != now.get(k, "")}


def problem(workdir: Path, moved: dict[str, list], files: list[Path]) -> str | None:
    """Why the data under the moved paths cannot be the run's (None: the same files)."""
    recorded = recorded_files(workdir)
    if recorded is None:
        return "config.json, which records the files the run trained on, is missing or unreadable"
    differ = _differing(recorded, files_now(files))
    return f"other files are there ({differ})" if differ else None


def replaced(workdir: Path, files: list[Path]) -> str:
    """The training files under an unmoved path that differ from config.json's record, named
    ('' when the same, or when nothing is recorded)."""
    recorded = recorded_files(workdir)
    return _differing(recorded, files_now(files)) if recorded is not None else ""


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
    _check_manifest(workdir, saved, current, data_filter)
    moved = moved_paths(saved, current)
    if not moved:
        recorded = recorded_files(workdir)
        if recorded is None:
            log(f"WARNING: {Path(workdir) / 'config.json'} does not record the files the run trained on (missing or "
                "unreadable): the data could not be checked against them")  # fmt: skip
        elif differ := _differing(recorded, files_now(files)):
            raise ConfigChanged(f"{workdir} holds a run trained on other files than {_place(current['data'])} "
                                f"holds now ({differ} differ from config.json's record): {_ADVICE}")  # fmt: skip
        return
    moves = ", ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in moved.items())
    reason = problem(workdir, moved, files)
    if reason:
        raise ConfigChanged(f"{workdir} holds a run trained on data elsewhere ({moves}): {reason}; {_ADVICE}")
    log(f"{moves}: the same training files the run trained on (fingerprints as config.json records); resuming")


def _place(data: dict) -> str:
    """The data path a config names, absolute where it was given relative to the current folder."""
    given = data.get("digits_file") if data.get("dataset") == "digits" else data.get("dir")
    if not given:
        return "the built-in data"
    path = Path(given).expanduser()
    return given if path.is_absolute() else f"{given} ({path.absolute()})"


def _check_manifest(workdir: Path, saved: dict, current: dict, data_filter: dict | None) -> None:
    """The data.filter manifest must keep the images the run trained on; ``data.audit_dir`` may
    name another folder (staged with the data) when config.json can vouch for that."""
    before, now = (flat_config(c).get("data.audit_dir", "") for c in (saved, current))
    moved = f"data.audit_dir {before!r} -> {now!r}" if before != now else ""
    then = _recorded_kept(workdir) if data_filter else None  # the manifest matters only with data.filter
    if data_filter and _kept_differs(then, data_filter.get("kept_blake2b")):
        raise ConfigChanged(f"{workdir} holds a run trained with another data.filter manifest: "
                            f"{data_filter['manifest']} keeps other images ({data_filter['kept']}) than it did; "
                            "restore that manifest, choose another --workdir, or pass --start_fresh")  # fmt: skip
    if not moved:
        return
    if data_filter and not then:
        raise ConfigChanged(f"{workdir}: {moved}, but config.json does not record the images the run's manifest "
                            f"kept; resume with data.audit_dir={before!r}, or pass --start_fresh")  # fmt: skip
    kept = "its manifest keeps the images the run trained on" if data_filter else "unused (data.filter is off)"
    log(f"{moved}: {kept}; resuming")
