"""Data sources (PCAM HDF5, the built-in sample) and the Grain input pipeline. Numpy only."""

from pathlib import Path

from jaxpcam.data.pcam import open_split
from jaxpcam.data.sample import ensure_sample
from jaxpcam.errors import UserError

SAMPLE_NOTICE = (
    "data.dir is empty: training on the BUILT-IN SYNTHETIC SAMPLE (generated tiles in PCAM format, "
    "not real pathology). For real PCAM pass --config.data.dir=/path/to/pcam"
)


def resolve_data_dir(configured: str, log) -> tuple[Path, str]:
    """The folder to read and a word for where it came from ('sample' or 'user')."""
    if not configured:
        log(SAMPLE_NOTICE)
        return ensure_sample(log), "sample"
    data_dir = Path(configured).expanduser()
    if not data_dir.is_dir():
        raise UserError(f"config key data.dir: {data_dir} is not a folder")
    return data_dir, "user"


__all__ = ["SAMPLE_NOTICE", "open_split", "resolve_data_dir"]
