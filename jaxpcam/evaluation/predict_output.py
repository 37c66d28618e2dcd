"""Where predict may write its CSV, decided before any work so that a refusal comes at once: not a
folder, not the input, a place it may write, and an existing file only with overwrite. Light to
import (no JAX), so the predict command checks before it loads a model."""

import os
from pathlib import Path

from jaxpcam.core.errors import UserError


def exists_message(output: Path) -> str:
    return f"--output {output} exists: pass --overwrite to replace it, or name another file"


def _same_file(a: Path, b: Path) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)  # also a hard link
    except OSError:  # one of them does not exist
        return False


def check_not_input(output: Path, source: Path) -> None:
    """Refuses an --output that would replace the --input file or write into the --input folder
    (even with --overwrite: the images are the user's)."""
    if _same_file(output, source):
        raise UserError(f"--output {output} is the --input file: the CSV would replace the images; name another file")
    if source.is_dir() and Path(os.path.realpath(output)).is_relative_to(os.path.realpath(source)):
        raise UserError(f"--output {output} lies inside the --input folder {source}: name a file outside it")


def _check_writable(output: Path) -> None:
    """The folder the CSV goes to (through a link, the target's) takes new files; an existing
    device or pipe, written into as it is, takes writes."""
    target = Path(os.path.realpath(output)) if output.exists() else output
    if target.exists() and not target.is_file():
        if not os.access(target, os.W_OK):
            raise UserError(f"--output {output}: cannot write into it (permission denied)")
        return
    folder = next((p for p in target.parents if p.exists()), Path("."))
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(f"--output {output}: cannot write into the folder {folder} (permission denied)")


def check_output(output_text: str, overwrite: bool, source: Path | None = None) -> Path:
    """The --output path, refused when it could not be written (a folder, or given with a trailing
    slash, which says "a folder"; a folder it may not write into), is the input, or would replace a
    file unasked."""
    folder_meant = output_text.endswith(("/", os.sep))  # Path() drops the slash
    output = Path(output_text)
    if source is not None:
        check_not_input(output, source)
    if output.is_dir() or folder_meant:
        what = "is a folder" if output.is_dir() else "ends in a slash (a folder)"
        raise UserError(
            f"--output {output}{os.sep if folder_meant else ''} {what}: give the path of the CSV file to write"
        )
    blocking = next((p for p in output.parents if p.exists()), Path("."))
    if not blocking.is_dir():
        raise UserError(f"--output {output}: {blocking} is a file, not a folder")
    _check_writable(output)
    if output.is_file() and not overwrite:
        raise UserError(exists_message(output))
    return output
