import hashlib

import h5py
import numpy as np
import pytest

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
    from jaxpcam.data import open_training_data, resolve_data_dir
    from jaxpcam.data.sample import is_sample

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


def _sample_digest(folder):
    """The pixels, labels and meta rows (not the HDF5 bytes, which h5py versions may lay out
    differently)."""
    digest = hashlib.sha256()
    for split in SPLITS:
        for path, key in zip(split_paths(folder, split), ("x", "y"), strict=True):
            with h5py.File(path) as f:
                digest.update(f[key][:].tobytes())
        digest.update((folder / f"camelyonpatch_level_2_split_{split}_meta.csv").read_bytes())
    return digest.hexdigest()


V1_DIGEST = "bd360830585c6da83c648941ffb710434cb91bbb712998cc6f6e0bcda3068ab4"  # numpy 2.5.5, as released


@pytest.mark.skipif(np.__version__ != "2.5.5", reason="the digest is of numpy 2.5.5 (constraints.txt)")
def test_sample_version_1_never_changes(tmp_path):
    """A released sample version stays what it was: runs and the docs' numbers measured on it hold."""
    write_sample(tmp_path, {"train": 40, "valid": 8, "test": 8})
    assert _sample_digest(tmp_path) == V1_DIGEST


def _blue_minus_red_density(folder, split):
    """Mean optical density of blue minus red: a stain's hue, independent of brightness (which
    adds the same density to every channel)."""
    with h5py.File(split_paths(folder, split)[0]) as f:
        od = -np.log(np.maximum(f["x"][:].astype(np.float64), 1) / 255)
    return float((od[..., 2] - od[..., 0]).mean())


def test_sample_version_2_tests_on_another_lab_and_validates_on_the_first(tmp_path):
    from jaxpcam.config.checks import SAMPLE_VERSIONS
    from jaxpcam.data.sample import _LABS

    assert tuple(_LABS) == SAMPLE_VERSIONS  # the config accepts exactly the versions there are
    sizes = {"train": 320, "valid": 320, "test": 320}
    hue = {}
    for version in (1, 2):
        write_sample(tmp_path / f"v{version}", sizes, version=version)
        hue[version] = {split: _blue_minus_red_density(tmp_path / f"v{version}", split) for split in SPLITS}
    assert hue[2]["test"] - hue[2]["train"] > 0.1  # another lab: Macenko's eosin absorbs blue
    assert abs(hue[2]["valid"] - hue[2]["train"]) < 0.08  # new slides from the training lab
    assert all(abs(hue[1][split] - hue[1]["train"]) < 0.08 for split in SPLITS)  # version 1: one lab
    assert _sample_digest(tmp_path / "v1") != _sample_digest(tmp_path / "v2")


def test_data_sample_version_picks_its_own_cache_folder_for_training_and_evaluation(tmp_path, monkeypatch):
    import jaxpcam.data.sample as sample
    from jaxpcam.config import base_config
    from jaxpcam.data import open_training_data
    from jaxpcam.evaluation.data import open_eval_split

    monkeypatch.setenv("JAXPCAM_DATA_CACHE", str(tmp_path))
    monkeypatch.setattr(sample, "SAMPLE_SIZES", {"train": 16, "valid": 8, "test": 8})
    config = base_config()
    config.data.sample_version = 2
    data = open_training_data(config.data, 0)
    assert {p.parent for p in data.files} == {tmp_path / "pcam-sample-v2"}
    assert open_eval_split(config, "test").x_path.parent == tmp_path / "pcam-sample-v2"
    assert (tmp_path / "pcam-sample-v2" / "COMPLETE").read_text() == "jaxpcam sample v2\n"
    assert not (tmp_path / "pcam-sample-v1").exists()


def test_an_unfinished_sample_folder_holding_a_users_file_is_refused_not_deleted(tmp_path, monkeypatch):
    import os
    import stat

    import jaxpcam.data.sample as sample
    from jaxpcam.core.errors import UserError

    monkeypatch.setenv("JAXPCAM_DATA_CACHE", str(tmp_path))
    monkeypatch.setattr(sample, "SAMPLE_SIZES", {"train": 16, "valid": 8, "test": 8})
    folder = tmp_path / "pcam-sample-v2"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine\n")
    with pytest.raises(UserError, match=r"pcam-sample-v2 is not a complete built-in sample and holds other files "):
        ensure_sample(2)
    assert (folder / "notes.txt").read_text() == "mine\n"
    (folder / "notes.txt").unlink()
    (folder / "camelyonpatch_level_2_split_train_x.h5").write_text("half written")  # only sample files: remade
    assert ensure_sample(2) == folder and len(open_split(folder, "train")) == 16
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o755  # a shared cache is readable by the group
