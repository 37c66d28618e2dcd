"""The official release ships ``.h5.gz``: decompress each once, streaming, with progress."""

import gzip
import hashlib
import os
import tempfile
import time
import zlib
from pathlib import Path

from jaxpcam.core.errors import UserError
from jaxpcam.core.reporting import ProgressLine, log

_BLOCK = 8 << 20


def _writable(folder: Path) -> bool:
    return os.access(folder, os.W_OK)


def _target_dir(data_dir: Path, cache: Path) -> Path:
    """Beside the .gz files if that folder is writable, else a cache folder named by its path."""
    if _writable(data_dir):
        return data_dir
    tag = hashlib.blake2b(str(data_dir.resolve()).encode(), digest_size=6).hexdigest()
    return cache / f"pcam-{data_dir.name}-{tag}"


def gunzip_file(src: Path, dst: Path) -> None:
    """Streams ``src`` (gzip) into ``dst`` via a temp file + rename; prints progress every ~2 s."""
    total = src.stat().st_size
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".tmp")
    start = last = time.monotonic()
    line = ProgressLine()
    try:
        with os.fdopen(fd, "wb") as out, open(src, "rb") as raw, gzip.GzipFile(fileobj=raw) as gz:
            while block := gz.read(_BLOCK):
                out.write(block)
                now = time.monotonic()
                if now - last > 2 or raw.tell() == total:
                    last = now
                    rate = raw.tell() / max(now - start, 1e-9) / 1e6
                    text = f"{src.name}: {raw.tell() / total:6.1%} ({rate:.0f} MB/s compressed)"
                    line.show(text, final=raw.tell() == total)
        os.replace(tmp, dst)
    except (OSError, EOFError, zlib.error) as err:
        raise UserError(f"cannot decompress {src} (truncated or not gzip?): {err}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def decompress_missing(data_dir: Path, names: list[str], cache: Path) -> Path:
    """Folder holding ``names`` (.h5): ``data_dir`` itself, or where their .gz files were unpacked.

    Only files that are missing as .h5 but present as .h5.gz are decompressed, and only once.
    """
    missing = [n for n in names if not (data_dir / n).is_file()]
    gzipped = [n for n in missing if (data_dir / f"{n}.gz").is_file()]
    if not gzipped:
        return data_dir
    target = _target_dir(data_dir, cache)
    target.mkdir(parents=True, exist_ok=True)
    if target != data_dir:
        for name in set(names) - set(missing):
            link = target / name
            if not link.exists():
                link.symlink_to((data_dir / name).resolve())
    for name in gzipped:
        if (target / name).is_file():
            continue
        log(f"decompressing {name}.gz into {target} (once)")
        gunzip_file(data_dir / f"{name}.gz", target / name)
    return target
