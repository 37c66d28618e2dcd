"""The split a loaded run is evaluated on, found from the run's own config (or an override),
and the record of which files it came from (checked against the run's config.json provenance)."""

from pathlib import Path

import ml_collections

from jaxpcam.core.errors import UserError
from jaxpcam.core.reporting import log
from jaxpcam.core.seeds import make_streams
from jaxpcam.data import check_split, open_training_data, resolve_data_dir, sample_notice
from jaxpcam.data.pcam import open_split, split_paths
from jaxpcam.run.record import file_record, read_record


def open_eval_split(
    config: ml_collections.ConfigDict, split: str, data_dir: str | None = None, doing: str | None = None
):
    return open_eval_data(config, split, data_dir, doing)[0]


def open_eval_data(
    config: ml_collections.ConfigDict, split: str, data_dir: str | None = None, doing: str | None = None
) -> tuple[object, list[Path]]:
    """(the split, the files it is read from): ``split`` ('train', 'valid' or 'test') of the
    data the run was trained on; ``data_dir`` points a PCAM run at another copy of the same files
    (e.g. on another machine). With ``doing`` (the command's first read), the built-in sample is
    announced."""
    d = ml_collections.ConfigDict(config.data.to_dict())
    if d.dataset == "digits":
        if data_dir:
            d.digits_file = data_dir
        if split == "test":
            raise UserError("digits runs have a train and a valid split only (90/10 of the digits file), no test")
        data = open_training_data(d, make_streams(config.seed).data_seed)
        return getattr(data, split), list(data.files)
    configured = str(Path(data_dir).expanduser()) if data_dir else d.dir
    folder, source = resolve_data_dir(configured, d.sample_version)
    opened = open_split(folder, split)
    check_split(opened)  # no images, or NaN/inf pixels: one line, as for training
    if doing and source == "sample":
        log(sample_notice(folder, doing))
    return opened, [p for p in split_paths(folder, split) if p.is_file()]


def data_dir_for(workdir: Path, config: ml_collections.ConfigDict, data_dir: str | None) -> str | None:
    """The ``data_dir`` override an evaluation uses: ``--data_dir`` if given; for a relative
    ``data.dir`` (relative to where training ran) the absolute folder config.json's provenance
    records for it, wherever this runs (a folder of that name here may hold other data); else
    None (the run's data.dir as it is)."""
    d = config.data
    if data_dir or d.dataset == "digits" or not d.dir or Path(d.dir).expanduser().is_absolute():
        return data_dir
    recorded = read_record(workdir).latest_data.get("dir")  # the start the checkpoint config comes from
    recorded = recorded if isinstance(recorded, str) else None
    if recorded and Path(recorded).is_dir():
        if Path(recorded).resolve() != Path(d.dir).resolve():
            log(f"data.dir {d.dir!r} is relative: reading {recorded}, where the run read it (config.json)")
        return recorded
    if Path(d.dir).is_dir():  # no record, or its folder gone (a run copied elsewhere with its data): from here
        if not recorded and not read_record(workdir).files_by_name():
            log(f"WARNING: {Path(workdir) / 'config.json'} does not record the run's data: reading data.dir "
                f"{d.dir!r} from {Path.cwd()}, unchecked")  # fmt: skip
        return None
    where = f"{recorded}, where the run read it, is no folder now" if recorded else f"it is no folder from {Path.cwd()}"
    raise UserError(f"config key data.dir: {d.dir} is relative and {where}: pass --data_dir")


def data_record(files: list[Path]) -> dict:
    """What metrics.json records of the data evaluated: its folder and each file's fingerprint
    (the one config.json's provenance records for the training data)."""
    return {
        "folder": str(files[0].parent.absolute()) if files else None,
        "files": [file_record(p) for p in files],
    }


def warn_if_other_data(workdir: Path, record: dict) -> None:
    """One WARNING line per evaluated file whose fingerprint differs from every one config.json
    records for a file of that name: other data than the run was trained and evaluated on."""
    recorded = read_record(workdir).files_by_name()
    for file in record["files"]:
        known = recorded.get(file["name"], [])
        if known and file["fingerprint"] not in {k.get("fingerprint") for k in known}:
            log(f"WARNING: evaluating on {file['path']} ({file['fingerprint']}), but {Path(workdir) / 'config.json'} "
                f"records {known[-1].get('path')} ({known[-1].get('fingerprint')}): other data than the run's; "
                "metrics.json records which")  # fmt: skip


def threshold_on_other_data(workdir: Path, stored: dict) -> bool:
    """Whether the stored decision threshold was chosen on valid files other than the run's
    (``evaluate --data_dir`` at other data): its value belongs to those files. A threshold from
    before thresholds recorded their data, or with a record not as evaluate writes it, counts as
    the run's own."""
    recorded = read_record(workdir).files_by_name()
    data = stored.get("data")
    files = data.get("files") if isinstance(data, dict) else None
    for f in files if isinstance(files, list) else []:
        name, fingerprint = (f.get("name"), f.get("fingerprint")) if isinstance(f, dict) else (None, None)
        if not isinstance(name, str) or not isinstance(fingerprint, str) or not recorded.get(name):
            continue
        if fingerprint not in {k.get("fingerprint") for k in recorded[name]}:
            return True
    return False


def warn_if_threshold_on_other_data(workdir: Path, path: Path, stored: dict, tta: bool) -> bool:
    """threshold_on_other_data, said in one WARNING line when true."""
    if other := threshold_on_other_data(workdir, stored):
        folder = stored["data"].get("folder")
        where = f" ({folder})" if isinstance(folder, str) else ""
        again = "evaluate the valid split" + (" with --tta" if tta else "")
        log(f"WARNING: the decision threshold in {path} was chosen on other valid data than the run's{where}: "
            f"{again} on the run's data to choose it again")  # fmt: skip
    return other
