"""What the benchmark scripts check in their arguments before any measuring: a bad value is one
``error:`` line and exit 2 (argparse's own), never a traceback after minutes of work."""

import argparse
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1 (rounds, steps)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is less than 1")
    return value


def output_file(text: str) -> Path:
    """An argparse type: a file the results can be written to, checked before the work (its
    folder is made if missing and must be writable; the file is not a folder)."""
    path = Path(text).expanduser()
    folder = path.parent
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{path} is a folder")
    if any(p.exists() and not p.is_dir() for p in (folder, *folder.parents)):
        raise argparse.ArgumentTypeError(f"{folder} is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise argparse.ArgumentTypeError(f"cannot make {folder}: {err.strerror or err}") from None
    if not os.access(folder, os.W_OK):
        raise argparse.ArgumentTypeError(f"cannot write in {folder}")
    return path


def model_configs(text: str) -> list[str]:
    """An argparse type: comma-separated model names, each with its configs/<name>.py."""
    names = [m.strip() for m in text.split(",") if m.strip()]
    known = sorted(p.stem for p in (REPO / "configs").glob("*.py") if p.stem in ("mlp", "cnn", "resnet"))
    unknown = [m for m in names if m not in known]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"{', '.join(unknown) or 'none given'}: expected some of {', '.join(known)}")
    return names
