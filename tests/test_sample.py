import hashlib

import h5py
import numpy as np

from jaxpcam.data.pcam import SPLITS, open_split, split_paths
from jaxpcam.data.sample import ensure_sample, write_sample


def test_sample_has_the_official_pcam_format(tiny_pcam):
    for split in SPLITS:
        x_path, y_path = split_paths(tiny_pcam, split)
        with h5py.File(x_path) as fx, h5py.File(y_path) as fy:
            assert fx["x"].dtype == np.uint8 and fx["x"].shape[1:] == (96, 96, 3)
            assert fx["x"].compression is None and fx["x"].chunks is None  # contiguous, like the release
            assert fy["y"].dtype == np.uint8 and fy["y"].shape == (fx["x"].shape[0], 1, 1, 1)
        assert (tiny_pcam / f"camelyonpatch_level_2_split_{split}_meta.csv").is_file()


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_sample_is_deterministic_and_seeded(tmp_path):
    sizes = {"train": 40, "valid": 8}
    write_sample(tmp_path / "a", sizes)
    write_sample(tmp_path / "b", sizes)
    write_sample(tmp_path / "c", sizes, seed=1)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


def test_sample_is_roughly_balanced_and_varies_in_brightness(tiny_pcam):
    train = open_split(tiny_pcam, "train")
    assert 0.35 < train.labels.mean() < 0.65
    brightness = train.read(np.arange(len(train))).mean(axis=(1, 2, 3))
    assert brightness.max() - brightness.min() > 40  # dark and bright slides exist


def test_positives_are_darker_in_the_centre(tiny_pcam):
    """The label is about tumour nuclei in the centre 32x32: a real, learnable signal."""
    train = open_split(tiny_pcam, "train")
    images = train.read(np.arange(len(train))).astype(np.float64).mean(axis=3)
    centre_minus_all = images[:, 32:64, 32:64].mean(axis=(1, 2)) - images.mean(axis=(1, 2))
    assert centre_minus_all[train.labels == 1].mean() < centre_minus_all[train.labels == 0].mean() - 3


def test_ensure_sample_writes_once_into_the_cache(tmp_path, monkeypatch, messages):
    import jaxpcam.data.sample as sample

    monkeypatch.setenv("JAXPCAM_DATA_CACHE", str(tmp_path))
    monkeypatch.setattr(sample, "SAMPLE_SIZES", {"train": 16, "valid": 8, "test": 8})
    folder = ensure_sample()
    assert folder.parent == tmp_path and (folder / "COMPLETE").is_file()
    assert len(open_split(folder, "train")) == 16
    assert ensure_sample() == folder
    assert len(messages) == 1  # the second call found it and wrote nothing
    assert [p.name for p in tmp_path.iterdir()] == [folder.name]  # no temp folders left


def test_the_sample_is_recognised_by_its_files_and_announced_once_its_data_passed_the_checks(
    tiny_pcam, tmp_path, messages
):
    from jaxpcam.config import base_config
    from jaxpcam.data import is_sample, open_training_data, resolve_data_dir

    assert is_sample(tiny_pcam)
    assert resolve_data_dir(str(tiny_pcam)) == (tiny_pcam, "sample") and messages == []
    config = base_config().data
    config.dir = str(tiny_pcam)
    assert open_training_data(config, 0).source == "sample"
    notices = [m for m in messages if "BUILT-IN" in m]
    assert notices == [
        f"training on the BUILT-IN SYNTHETIC SAMPLE in {tiny_pcam}" + notices[0].split(str(tiny_pcam))[1]
    ]
    real = tmp_path / "real"  # real PCAM's meta files name Camelyon slides
    real.mkdir()
    (real / "camelyonpatch_level_2_split_valid_meta.csv").write_text(
        ",coord_y,coord_x,tumor_patch,center_tumor_patch,wsi\n0,1,2,False,False,camelyon16_train_normal_033\n"
    )
    assert not is_sample(real) and not is_sample(tmp_path)
