"""data.placement: the device path sees exactly the stream the host path reads."""

import numpy as np
import pytest

from jaxpcam.core.errors import UserError
from jaxpcam.data import pipeline as pipeline_lib
from jaxpcam.data.pcam import open_split, read_all
from jaxpcam.data.transforms import Dihedral, apply_dihedral, dihedral_table
from jaxpcam.training.memory import free_device_memory
from jaxpcam.training.placement import ResidentSplit, choose_placement, gather_batch

GIB = 2**30


def test_auto_takes_the_device_only_when_both_splits_fit_comfortably():
    assert choose_placement("auto", 7 * GIB, 60 * GIB).kind == "device"
    chosen = choose_placement("auto", 7 * GIB, 10 * GIB)
    assert chosen.kind == "host" and "7.00 GiB" in chosen.reason and "10.00 GiB free" in chosen.reason
    assert choose_placement("auto", 1, None).kind == "host"
    assert choose_placement("host", 1, 60 * GIB).kind == "host"


def test_device_that_does_not_fit_is_one_line_with_the_sizes_and_the_advice():
    with pytest.raises(UserError) as err:
        choose_placement("device", 8 * GIB, 4 * GIB)
    message = str(err.value)
    assert "8.00 GiB" in message and "4.00 GiB free" in message and "placement=host" in message
    assert "\n" not in message
    assert choose_placement("device", 3 * GIB, 4 * GIB).kind == "device"


def test_cpu_devices_share_the_available_ram():
    import jax

    free = free_device_memory(jax.local_devices())
    assert free is None or 0 < free < 2**50


def test_train_batches_are_the_per_record_stream_sliced_into_batches():
    labels = np.array([0] * 30 + [1] * 10)
    sampler = pipeline_lib.TrainBatches(labels, seed=5, batch_size=8, steps_per_epoch=5, epochs=3, balanced=True)
    assert len(sampler) == 15
    for step in (0, 4, 5, 14):
        epoch, offset = divmod(step, 5)
        want = pipeline_lib.epoch_indices(labels, 5, epoch, 40, True)[offset * 8 : offset * 8 + 8]
        np.testing.assert_array_equal(sampler[step][:, 0], np.arange(step * 8, step * 8 + 8))
        np.testing.assert_array_equal(sampler[step][:, 1], want)


def test_dihedral_table_moves_pixels_as_the_host_augmentation_does():
    images = np.random.default_rng(0).integers(0, 256, (8, 5, 5, 3), dtype=np.uint8)
    codes = np.arange(8)
    moved = np.take_along_axis(images.reshape(8, 25, 3), dihedral_table(5, 5)[codes][..., None], axis=1)
    np.testing.assert_array_equal(moved.reshape(images.shape), apply_dihedral(images, codes))
    assert len({tuple(row) for row in dihedral_table(5, 5)}) == 8


@pytest.mark.parametrize("augment", [True, False])
def test_device_gather_equals_the_host_batch_padding_included(tiny_pcam, augment):
    split = open_split(tiny_pcam, "valid")
    augmentations = (Dihedral(),) if augment else ()
    rows = np.array([[100, 3], [101, 3], [102, 50], [103, 0], [-1, 0], [-1, 0]])  # two padding rows
    want = pipeline_lib.LoadBatch(split, augmentations, 11)(rows)
    resident = ResidentSplit(read_all(split, block=7), augmentations)
    got = gather_batch(resident, pipeline_lib.BatchIndices(split.labels, augmentations, 11)(rows))
    assert set(got) == set(want)
    for key in want:
        np.testing.assert_array_equal(np.asarray(got[key]), want[key])


def test_index_batches_follow_the_same_train_stream_as_image_batches(tiny_pcam):
    split = open_split(tiny_pcam, "train")
    augmentations = (Dihedral(),)
    args = dict(batch_size=32, epochs=2, data_seed=3, augment_seed=4, balanced=True, transforms=augmentations)
    images = list(pipeline_lib.train_dataset(split, start_step=5, **args))
    indices = list(pipeline_lib.train_dataset(split, start_step=5, images=False, **args))
    assert len(images) == len(indices) == 2 * (256 // 32) - 5
    resident = ResidentSplit(read_all(split), augmentations)
    for host, device in zip(images, indices, strict=True):
        np.testing.assert_array_equal(np.asarray(gather_batch(resident, device)["image"]), host["image"])
        np.testing.assert_array_equal(device["label"], host["label"])


def test_a_run_whose_splits_do_not_fit_stops_before_training(tiny_pcam, tmp_path, monkeypatch):
    from jaxpcam.config import base_config
    from jaxpcam.training import placement
    from jaxpcam.training.loop import train_and_evaluate

    monkeypatch.setattr(placement, "free_device_memory", lambda devices: 2**20)  # 1 MiB free
    config = base_config()
    config.data.dir, config.data.placement = str(tiny_pcam), "device"
    with pytest.raises(UserError, match=r"'device' does not fit: train \+ valid need 0\.01 GiB per device, 0\.00 GiB"):
        train_and_evaluate(config, tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoints").exists() and not (tmp_path / "run" / "metrics.jsonl").exists()
