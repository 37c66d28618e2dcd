import pickle

import h5py
import numpy as np
import pytest

from jaxpcam.core.errors import UserError
from jaxpcam.data.pcam import open_split, split_paths


def _write(tmp_path, x, y, split="train"):
    x_path, y_path = split_paths(tmp_path, split)
    with h5py.File(x_path, "w") as f:
        f["x"] = x
    with h5py.File(y_path, "w") as f:
        f["y"] = y
    return tmp_path


def _images(n, dtype=np.uint8):
    return (np.arange(n * 96 * 96 * 3) % 251).reshape(n, 96, 96, 3).astype(dtype)


@pytest.mark.parametrize("y_shape", [(6, 1, 1, 1), (6,)])
def test_reads_both_label_layouts(tmp_path, y_shape):
    labels = np.array([0, 1, 1, 0, 1, 0], np.uint8)
    split = open_split(_write(tmp_path, _images(6), labels.reshape(y_shape)), "train")
    assert split.labels.tolist() == labels.tolist()
    assert len(split) == 6


def test_read_returns_requested_order_and_repeats(tmp_path):
    x = _images(10)
    split = open_split(_write(tmp_path, x, np.zeros(10, np.uint8)), "train")
    indices = np.array([7, 2, 3, 2, 9, 0])
    np.testing.assert_array_equal(split.read(indices), x[indices])


def test_float32_course_copies_are_clipped_to_uint8(tmp_path):
    x = _images(3, np.float32)
    x[0, 0, 0] = [-20.0, 300.0, 12.7]
    split = open_split(_write(tmp_path, x, np.zeros(3, np.uint8)), "train")
    out = split.read(np.arange(3))
    assert out.dtype == np.uint8
    assert out[0, 0, 0].tolist() == [0, 255, 12]


def test_split_is_picklable_and_reopens_after_use(tmp_path):
    x = _images(4)
    split = open_split(_write(tmp_path, x, np.zeros(4, np.uint8)), "train")
    split.read(np.array([1]))  # opens the handle
    clone = pickle.loads(pickle.dumps(split))
    np.testing.assert_array_equal(clone.read(np.array([3])), x[[3]])


def test_missing_file_names_it_and_lists_what_was_found(tmp_path):
    _write(tmp_path, _images(2), np.zeros(2, np.uint8), split="train")
    with pytest.raises(UserError, match=r"camelyonpatch_level_2_split_valid_x\.h5.*found: .*train_x\.h5"):
        open_split(tmp_path, "valid")


@pytest.mark.parametrize(
    ("x", "y", "message"),
    [
        (_images(3), np.zeros(4, np.uint8), "holds 3 images but .* holds 4 labels"),
        (np.zeros((3, 32, 32, 3), np.uint8), np.zeros(3, np.uint8), r"must have shape \(N, 96, 96, 3\)"),
        (_images(3), np.array([0, 2, 1], np.uint8), "labels must be 0 or 1, found \\[2\\]"),
        (_images(3), np.zeros((3, 2), np.uint8), r"'y' must have shape \(N,\) or \(N, 1, 1, 1\)"),
    ],
)
def test_bad_files_give_clear_errors(tmp_path, x, y, message):
    with pytest.raises(UserError, match=message):
        open_split(_write(tmp_path, x, y), "train")


def test_corrupt_file_is_a_clear_error(tmp_path):
    _write(tmp_path, _images(2), np.zeros(2, np.uint8))
    x_path, _ = split_paths(tmp_path, "train")
    x_path.write_bytes(x_path.read_bytes()[:100])
    with pytest.raises(UserError, match="corrupt or truncated"):
        open_split(tmp_path, "train")


def test_in_memory_reads_equal_h5_reads_and_never_travel_to_workers(tiny_pcam):
    on_disk, in_memory = open_split(tiny_pcam, "train"), open_split(tiny_pcam, "train")
    in_memory.load_into_memory(block=100)  # blocks that do not divide the split
    indices = np.random.default_rng(0).integers(0, len(on_disk), 64)
    indices[:3] = [5, 5, len(on_disk) - 1]
    np.testing.assert_array_equal(in_memory.read(indices), on_disk.read(indices))
    assert in_memory.nbytes == len(in_memory) * 96 * 96 * 3
    pickle.dumps(on_disk)
    with pytest.raises(RuntimeError, match="num_workers=0"):
        pickle.dumps(in_memory)
