"""data/pixels.py: one value-range rule for every image reader (train, valid, test, evaluate
--data_dir, the digits file, predict)."""

import shutil

import h5py
import numpy as np
import pytest

from conftest import train_in_process
from jaxpcam.core.errors import UserError
from jaxpcam.data import pixels
from jaxpcam.data.digits import open_digits
from jaxpcam.data.pcam import open_split, split_paths


def test_the_rule():
    assert pixels.scaled_to_one(np.array([0.0, 0.5, 1.0], np.float32))
    assert not pixels.scaled_to_one(np.array([0.0, 0.5, 1.5], np.float32))  # 0..255 floats, dark
    assert not pixels.scaled_to_one(np.zeros(4, np.float32))  # all black: nothing says scaled
    assert not pixels.scaled_to_one(np.array([0, 1], np.uint8))
    assert not pixels.scaled_to_one(np.array([-0.5, 0.5], np.float32))
    assert pixels.scaled_to_one(np.array([np.nan, 0.2], np.float32))  # NaN is refused elsewhere
    block = np.full((2, 4, 4, 3), 0.7, np.float32)
    with pytest.raises(UserError, match=r"images 5\.\.6 hold floats within 0\.\.1; the model takes 0\.\.255"):
        pixels.checked_uint8(block, 5, "in.npy")
    assert pixels.checked_uint8(block * 255, 0, "in.npy").dtype == np.uint8


@pytest.fixture(scope="module")
def scaled_pcam(tiny_pcam, tmp_path_factory):
    """The tiny data set as a course copy that stores float32 scaled to 0..1."""
    out = tmp_path_factory.mktemp("scaled")
    for split in ("train", "valid", "test"):
        x_path, y_path = split_paths(tiny_pcam, split)
        shutil.copy(y_path, out / y_path.name)
        with h5py.File(x_path, "r") as f:
            x = f["x"][:].astype(np.float32) / 255.0
        with h5py.File(out / x_path.name, "w") as f:
            f["x"] = x
    return out


def test_float_0_to_1_training_data_is_refused_before_training(scaled_pcam, tmp_path):
    with pytest.raises(UserError, match=r"hold floats within 0\.\.1; the model takes 0\.\.255") as err:
        train_in_process(tmp_path / "run", scaled_pcam)
    assert "train" in str(err.value)
    assert not (tmp_path / "run" / "checkpoints").exists()
    for split in ("valid", "test"):  # evaluate --data_dir opens its splits the same way
        with pytest.raises(UserError, match=r"within 0\.\.1"):
            open_split(scaled_pcam, split)


def test_float_0_to_255_data_still_reads(tiny_pcam, tmp_path):
    x_path, y_path = split_paths(tiny_pcam, "valid")
    shutil.copy(y_path, tmp_path / y_path.name)
    with h5py.File(x_path, "r") as f:
        x = f["x"][:]
    with h5py.File(tmp_path / x_path.name, "w") as f:
        f["x"] = x.astype(np.float32)
    split = open_split(tmp_path, "valid")
    assert np.array_equal(split.read(np.arange(4)), x[:4])


def test_digits_floats_scaled_to_0_to_1_are_refused(tmp_path):
    path = tmp_path / "digits.h5"
    with h5py.File(path, "w") as f:
        f["images"] = np.random.default_rng(0).random((40, 28, 28)).astype(np.float32)
        f["labels"] = np.repeat(np.arange(4, 10), 7)[:40]
    with pytest.raises(UserError, match=r"within 0\.\.1"):
        open_digits(path, (4, 5, 6, 7, 8, 9), seed=0)
    with h5py.File(path, "r+") as f:
        scaled = f["images"][:] * 255
        del f["images"]
        f["images"] = scaled
    train, _ = open_digits(path, (4, 5, 6, 7, 8, 9), seed=0)
    assert train.images.dtype == np.uint8 and train.images.max() > 1
