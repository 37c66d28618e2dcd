import gzip
import shutil

import numpy as np
import pytest

import jaxpcam.data.gz as gz
from jaxpcam.core.errors import UserError
from jaxpcam.data import resolve_data_dir
from jaxpcam.data.pcam import open_split


def _gzipped_copy(src, dst, keep_plain=()):
    dst.mkdir()
    for path in src.glob("*.h5"):
        if path.name in keep_plain:
            shutil.copy(path, dst / path.name)
        else:
            with open(path, "rb") as f, gzip.open(dst / f"{path.name}.gz", "wb", compresslevel=1) as out:
                shutil.copyfileobj(f, out)
    return dst


def test_a_folder_of_h5_gz_files_is_decompressed_once_beside_them(tiny_pcam, tmp_path, messages):
    data = _gzipped_copy(tiny_pcam, tmp_path / "release")
    folder, source = resolve_data_dir(str(data))
    assert folder == data and source == "user"
    for name in ("camelyonpatch_level_2_split_train_x.h5", "camelyonpatch_level_2_split_valid_y.h5"):
        assert (data / name).read_bytes() == (tiny_pcam / name).read_bytes()
    stamp = (data / "camelyonpatch_level_2_split_train_x.h5").stat().st_mtime_ns
    assert any(m.startswith("decompressing camelyonpatch_level_2_split_train_x.h5.gz") for m in messages)
    messages.clear()
    resolve_data_dir(str(data))
    assert messages == [] and (data / "camelyonpatch_level_2_split_train_x.h5").stat().st_mtime_ns == stamp
    assert not list(data.glob(".*.tmp"))


def test_read_only_folder_unpacks_into_the_cache(tiny_pcam, tmp_path, monkeypatch):
    data = _gzipped_copy(tiny_pcam, tmp_path / "ro", keep_plain={"camelyonpatch_level_2_split_train_y.h5"})
    monkeypatch.setenv("JAXPCAM_DATA_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(gz, "_writable", lambda folder: False)
    folder, _ = resolve_data_dir(str(data))
    assert folder.parent == tmp_path / "cache"
    train = open_split(folder, "train")
    np.testing.assert_array_equal(train.labels, open_split(tiny_pcam, "train").labels)
    assert [p.name for p in data.glob("*.h5")] == ["camelyonpatch_level_2_split_train_y.h5"]  # untouched


def test_truncated_gz_is_a_clear_error_and_leaves_nothing_behind(tiny_pcam, tmp_path):
    data = _gzipped_copy(tiny_pcam, tmp_path / "bad")
    broken = data / "camelyonpatch_level_2_split_train_x.h5.gz"
    broken.write_bytes(broken.read_bytes()[:2000])
    with pytest.raises(UserError, match=r"cannot decompress .*train_x\.h5\.gz"):
        resolve_data_dir(str(data))
    assert not (data / "camelyonpatch_level_2_split_train_x.h5").exists()
    assert not list(data.glob(".*.tmp"))
