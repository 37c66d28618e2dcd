import numpy as np
import pytest

from jaxpcam.data import pipeline, transforms
from jaxpcam.data.pcam import open_split


def test_balanced_sampling_equalises_classes_with_replacement():
    labels = np.array([1] * 100 + [0] * 900)
    drawn = pipeline.epoch_indices(labels, seed=3, epoch=0, count=20000, balanced=True)
    assert abs(labels[drawn].mean() - 0.5) < 0.02
    assert len(np.unique(drawn)) < len(drawn)  # with replacement


def test_unbalanced_sampling_is_a_permutation_that_changes_per_epoch():
    labels = np.zeros(50, int)
    first = pipeline.epoch_indices(labels, seed=3, epoch=0, count=50, balanced=False)
    second = pipeline.epoch_indices(labels, seed=3, epoch=1, count=50, balanced=False)
    assert sorted(first) == list(range(50))
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(first, pipeline.epoch_indices(labels, 3, 0, 50, False))


def test_dihedral_codes_are_seeded_per_position_and_cover_all_eight():
    positions = np.arange(4000)
    codes = transforms.dihedral_codes(11, positions)
    assert set(codes.tolist()) == set(range(8))
    np.testing.assert_array_equal(codes, transforms.dihedral_codes(11, positions))
    assert not np.array_equal(codes, transforms.dihedral_codes(12, positions))
    np.testing.assert_array_equal(codes[100:200], transforms.dihedral_codes(11, positions[100:200]))


@pytest.mark.parametrize("dtype", [np.uint8, np.int64])
def test_apply_dihedral_matches_numpy_rotations_and_flips(dtype):
    images = np.arange(5 * 4 * 4 * 3).reshape(5, 4, 4, 3).astype(dtype)
    codes = np.array([0, 1, 3, 4, 7])
    out = transforms.apply_dihedral(images, codes)
    np.testing.assert_array_equal(out[0], images[0])
    np.testing.assert_array_equal(out[1], np.rot90(images[1], 1))
    np.testing.assert_array_equal(out[2], np.rot90(images[2], 3))
    np.testing.assert_array_equal(out[3], images[3][:, ::-1])
    np.testing.assert_array_equal(out[4], np.rot90(images[4], 3)[:, ::-1])


def _train(tiny_pcam, **kw):
    augmentations = (transforms.Dihedral(),)
    args = dict(batch_size=32, epochs=2, data_seed=5, augment_seed=9, balanced=True, transforms=augmentations)
    return pipeline.train_dataset(open_split(tiny_pcam, "train"), **{**args, **kw})


def test_train_stream_is_deterministic_and_resumes_at_any_step(tiny_pcam):
    full = list(_train(tiny_pcam))
    assert len(full) == 2 * (256 // 32)
    again = list(_train(tiny_pcam))
    resumed = list(_train(tiny_pcam, start_step=5))
    for a, b in zip(full, again, strict=True):
        np.testing.assert_array_equal(a["image"], b["image"])
    for a, b in zip(full[5:], resumed, strict=True):
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["label"], b["label"])
    assert not np.array_equal(full[0]["image"], next(iter(_train(tiny_pcam, data_seed=6)))["image"])


def test_augmentation_only_changes_orientation(tiny_pcam):
    plain = next(iter(_train(tiny_pcam, transforms=())))
    augmented = next(iter(_train(tiny_pcam)))
    np.testing.assert_array_equal(plain["label"], augmented["label"])
    assert not np.array_equal(plain["image"], augmented["image"])
    np.testing.assert_array_equal(np.sort(plain["image"], axis=None), np.sort(augmented["image"], axis=None))


def test_worker_processes_give_the_same_stream(tiny_pcam):
    in_process = list(_train(tiny_pcam, epochs=1))
    with_workers = list(_train(tiny_pcam, epochs=1, num_workers=2))
    assert len(in_process) == len(with_workers)
    for a, b in zip(in_process, with_workers, strict=True):
        np.testing.assert_array_equal(a["image"], b["image"])


def test_eval_stream_visits_every_record_once_with_a_padding_mask(tiny_pcam):
    valid = open_split(tiny_pcam, "valid")
    batches = list(pipeline.eval_dataset(valid, batch_size=40))
    assert [b["image"].shape[0] for b in batches] == [40, 40, 40]
    mask = np.concatenate([b["mask"] for b in batches])
    assert mask.sum() == 96 and not mask[96:].any()
    labels = np.concatenate([b["label"] for b in batches])[mask]
    np.testing.assert_array_equal(labels, valid.labels)
    np.testing.assert_array_equal(batches[0]["image"], valid.read(np.arange(40)))


@pytest.mark.parametrize("n", [0, 1])
def test_steps_per_epoch_drops_the_partial_batch(n):
    assert pipeline.steps_per_epoch(64 + n, 32) == 2
