"""Training on the audit's clean-index manifest (``data.filter=True``)."""

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np

from jaxpcam.core.errors import UserError
from jaxpcam.data.pcam import PcamSplit, file_fingerprint


@dataclasses.dataclass
class FilteredSplit:
    """The images of ``base`` listed in ``kept``, renumbered 0..len-1 (the interface of PcamSplit)."""

    base: PcamSplit
    kept: np.ndarray

    def __post_init__(self):
        self.labels = self.base.labels[self.kept]

    def __len__(self) -> int:
        return len(self.kept)

    def read(self, indices: np.ndarray) -> np.ndarray:
        return self.base.read(self.kept[indices])


def apply_manifest(train: PcamSplit, path: Path) -> tuple[FilteredSplit, dict]:
    """The training split restricted to the manifest, and what to record about it."""
    if not path.is_file():
        raise UserError(
            f"data.filter=True needs {path}: run `python -m jaxpcam.audit {train.x_path.parent}` first "
            "(or point data.audit_dir at its output)"
        )
    raw = path.read_bytes()
    manifest = json.loads(raw)
    if manifest.get("x_fingerprint") != file_fingerprint(train.x_path):
        raise UserError(f"{path} was made for a different {train.x_path.name}: run the audit again")
    kept = np.asarray(manifest["kept"], np.int64)
    info = {
        "manifest": str(path),
        "manifest_blake2b": hashlib.blake2b(raw, digest_size=16).hexdigest(),
        "kept_blake2b": kept_digest(kept),
        "kept": len(kept),
        "dropped": int(manifest["dropped"]),
    }
    return FilteredSplit(train, kept), info


def kept_digest(kept) -> str:
    """What identifies the training set a manifest gives: its kept indices (not its bytes, which
    hold the folder as the audit was given it: a re-audit from elsewhere is the same manifest)."""
    return hashlib.blake2b(np.asarray(kept, np.int64).tobytes(), digest_size=16).hexdigest()


def manifest_kept_digest(path: Path) -> str | None:
    """kept_digest of the manifest in ``path``, None if it is missing or unreadable."""
    try:
        return kept_digest(json.loads(Path(path).read_text())["kept"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
