"""The split a loaded run is evaluated on, found from the run's own config (or an override)."""

from pathlib import Path

import ml_collections

from jaxpcam.data import check_split, open_split, open_training_data, resolve_data_dir, sample_notice
from jaxpcam.errors import UserError
from jaxpcam.reporting import log
from jaxpcam.seeds import make_streams


def open_eval_split(
    config: ml_collections.ConfigDict, split: str, data_dir: str | None = None, doing: str | None = None
):
    """``split`` ('train', 'valid' or 'test') of the data the run was trained on; ``data_dir``
    points a PCAM run at another copy of the same files (e.g. on another machine). With
    ``doing`` (the command's first read), the built-in sample is announced."""
    d = ml_collections.ConfigDict(config.data.to_dict())
    if d.dataset == "digits":
        if data_dir:
            d.digits_file = data_dir
        if split == "test":
            raise UserError("digits runs have a train and a valid split only (90/10 of the digits file), no test")
        data = open_training_data(d, make_streams(config.seed).data_seed)
        return getattr(data, split)
    configured = str(Path(data_dir).expanduser()) if data_dir else d.dir
    folder, source = resolve_data_dir(configured, d.get("sample_version", 1))  # a run older than the key: 1
    opened = open_split(folder, split)
    check_split(opened)  # no images, or NaN/inf pixels: one line, as for training
    if doing and source == "sample":
        log(sample_notice(folder, doing))
    return opened
