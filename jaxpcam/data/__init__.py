"""Data sources (PCAM HDF5, the built-in sample, the digits task) and the Grain input pipeline.

Numpy only: nothing here imports jax, so Grain worker processes stay light.
"""

import dataclasses
from pathlib import Path

import numpy as np

from jaxpcam.core.errors import UserError
from jaxpcam.core.reporting import log
from jaxpcam.data.digits import create_digits_h5, open_digits
from jaxpcam.data.gz import decompress_missing
from jaxpcam.data.manifest import apply_manifest
from jaxpcam.data.pcam import SPLITS, data_files, file_fingerprint, open_split, split_paths
from jaxpcam.data.sample import cache_dir, ensure_sample, is_sample
from jaxpcam.data.stats import cached_nonfinite_count


def sample_notice(folder: Path, doing: str) -> str:
    """The line every command that uses the built-in sample prints once, e.g. ``doing='training on'``."""
    return (
        f"{doing} the BUILT-IN SYNTHETIC SAMPLE in {folder} (generated tiles in PCAM format, not real "
        "pathology); for real PCAM set data.dir to its folder"
    )


@dataclasses.dataclass(frozen=True)
class TrainingData:
    """The train and validation splits of a run, the files they come from, and their origin."""

    train: object  # PcamSplit or DigitsSplit: len(), .labels, .read(indices)
    valid: object
    files: list[Path]
    source: str  # 'sample', 'user' or 'digits:<origin>'
    filter: dict | None = None  # the clean-index manifest used, when data.filter is on
    cache_folders: tuple[Path, ...] = ()  # where derived files (train statistics) may be cached

    def stats_key(self) -> str:
        """Names what the training statistics depend on: the train file and the manifest."""
        fingerprint = file_fingerprint(self.files[0]) if self.files else ""
        return f"{fingerprint}|{(self.filter or {}).get('manifest_blake2b', 'all')}"

    @property
    def image_shape(self) -> tuple[int, ...]:
        return self.train.read(np.array([0])).shape[1:]


def resolve_data_dir(configured: str, sample_version: int = 1) -> tuple[Path, str]:
    """The PCAM folder to read and a word for where it came from: 'sample' for the built-in
    sample (the default, in its ``sample_version``, or a folder holding it, recognised by its
    files), else 'user'. The caller announces a sample (``sample_notice``) once its data has
    passed the checks."""
    if not configured:
        data_dir = ensure_sample(sample_version)
    else:
        data_dir = Path(configured).expanduser()
        if not data_dir.is_dir():
            raise UserError(f"config key data.dir: {data_dir} is not a folder")
        names = [p.name for split in SPLITS for p in split_paths(data_dir, split)]
        data_dir = decompress_missing(data_dir, names, cache_dir())
    return data_dir, "sample" if is_sample(data_dir) else "user"


def digits_cache_path(digits) -> Path:
    """Where the digits file built from scikit-learn's digits for ``digits`` is cached."""
    return cache_dir() / f"digits-{''.join(map(str, digits))}-sklearn.h5"


def _digits_file(d) -> tuple[Path, str]:
    if d.digits_file:
        return Path(d.digits_file).expanduser(), "digits:user"
    path = digits_cache_path(d.digits)
    if not path.is_file():
        log(f"writing digits {tuple(d.digits)} from scikit-learn's bundled digits to {path}")
        create_digits_h5(path, tuple(d.digits))
    return path, "digits:sklearn"


def cache_folders(data_dir: Path) -> tuple[Path, ...]:
    """Where numbers derived from a PCAM folder's files (train statistics, non-finite counts) are
    cached: next to the audit's output, else in the user's cache."""
    return (data_dir / "jaxpcam-audit", cache_dir() / "stats")


def check_split(split) -> None:
    """Refuses a PCAM split that training or evaluation cannot use: one without images, or a
    float ``x`` holding NaN or inf pixels (the clip-and-cast on read would turn them into 0
    silently). A float file is scanned once; its count is cached per file fingerprint."""
    if len(split) == 0:
        raise UserError(f"the {split.name} split is empty: {split.x_path} holds 0 images")
    if split.dtype != "uint8":
        bad = cached_nonfinite_count(split.x_path, cache_folders(split.x_path.parent))
        if bad:
            raise UserError(
                f"{split.x_path} holds {bad:,} non-finite pixel values (NaN or inf) in 'x': fix the file "
                f"(python -m jaxpcam.audit {split.x_path.parent} lists the images)"
            )


def _warn_single_class(train) -> None:
    classes = np.unique(train.labels)
    if len(classes) < 2:
        only = f"only label {classes[0]}" if len(classes) else "no labels"
        log(f"WARNING: the training split holds {only} ({len(train)} images): ROC-AUC and balanced sampling "
            "are meaningless with one class in the training split")  # fmt: skip


def open_training_data(data_config, data_seed: int) -> TrainingData:
    """The train and valid splits of ``data_config``, each checked to hold images (and, for a
    float PCAM file, only finite pixels) before any training starts."""
    if data_config.dataset == "digits":
        path, source = _digits_file(data_config)
        train, valid = open_digits(path, tuple(data_config.digits), data_seed, data_config.valid_fraction)
        for split in (train, valid):
            if len(split) == 0:
                raise UserError(
                    f"the {split.name} split is empty: {path} holds {len(train) + len(valid)} images of "
                    f"data.digits {tuple(data_config.digits)} (data.valid_fraction {data_config.valid_fraction})"
                )
        _warn_single_class(train)
        return TrainingData(train, valid, [path], source, None, (cache_dir() / "stats",))
    data_dir, source = resolve_data_dir(data_config.dir, data_config.sample_version)
    train, valid = open_split(data_dir, "train"), open_split(data_dir, "valid")
    if train.dtype != "uint8":
        log(f"{train.x_path.name} stores {train.dtype}: values are clipped to 0..255 and cast to uint8 on read "
            f"(python -m jaxpcam.audit {data_dir} reports how many were out of range)")  # fmt: skip
    for split in (train, valid):
        check_split(split)
    if source == "sample":
        log(sample_notice(data_dir, "training on"))
    filter_info = None
    if data_config.filter:
        audit_dir = Path(data_config.audit_dir).expanduser() if data_config.audit_dir else data_dir / "jaxpcam-audit"
        base = train
        train, filter_info = apply_manifest(train, audit_dir / "manifest_train.json")
        if len(train) == 0:
            raise UserError(f"data.filter: {filter_info['manifest']} keeps none of the {len(base)} train images")
        log(f"data.filter: training on {len(train)} clean images, {filter_info['dropped']} dropped by the audit")
    _warn_single_class(train)
    return TrainingData(train, valid, data_files(data_dir), source, filter_info, cache_folders(data_dir))


def hold_in_memory(data: TrainingData) -> None:
    """data.in_memory: reads the PCAM train and valid files once into RAM (digits already are)."""
    splits = [getattr(split, "base", split) for split in (data.train, data.valid)]  # a filtered view's file
    splits = [split for split in splits if hasattr(split, "load_into_memory")]
    for split in splits:
        split.load_into_memory()
    if splits:
        gib = sum(split.nbytes for split in splits) / 2**30
        log(f"data.in_memory: train and valid held in RAM ({gib:.2f} GiB); reads are memory copies")


__all__ = [
    "TrainingData",
    "check_split",
    "digits_cache_path",
    "hold_in_memory",
    "is_sample",
    "open_split",
    "open_training_data",
    "resolve_data_dir",
    "sample_notice",
]
