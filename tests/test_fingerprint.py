"""data.pcam.file_fingerprint: a file is read once per process while it is unchanged, and read
again whenever it is rewritten or replaced, even with its modification time put back."""

import os
import shutil

from conftest import train_in_process
from jaxpcam.data import pcam
from jaxpcam.data.pcam import file_fingerprint


def test_an_unchanged_file_is_read_once_and_a_rewritten_one_again(tmp_path):
    path = tmp_path / "x.h5"
    path.write_bytes(b"a" * 300_000)
    pcam._fingerprint.cache_clear()
    first = file_fingerprint(path)
    assert file_fingerprint(tmp_path / "." / "x.h5") == first  # the same file by another spelling
    assert pcam._fingerprint.cache_info().misses == 1
    before = path.stat()
    path.write_bytes(b"b" * 300_000)  # same size, other content
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # as cp -p or rsync -t would leave it
    assert file_fingerprint(path) != first  # the change time moved: read again
    replacement = tmp_path / "y.h5"
    replacement.write_bytes(b"a" * 300_000)
    os.replace(replacement, path)  # another inode with the first content
    assert file_fingerprint(path) == first and pcam._fingerprint.cache_info().misses == 3


def test_a_resume_reads_each_data_file_once(tiny_pcam, tmp_path):
    """Judging the data (run/data_identity.py) and recording it (config.json) used to read every
    file twice."""
    data = tmp_path / "data"
    shutil.copytree(tiny_pcam, data)  # files no other test has fingerprinted in this process
    train_in_process(tmp_path / "run", data, **{"training.epochs": 1})
    pcam._fingerprint.cache_clear()
    train_in_process(tmp_path / "run", data, **{"training.epochs": 2})
    files = [p for p in data.iterdir() if p.suffix == ".h5"]
    info = pcam._fingerprint.cache_info()
    assert info.misses == len(files) and info.hits >= len(files)
