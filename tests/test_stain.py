"""data.stain_augment: H-E-DAB stain and brightness/contrast jitter, the same on host and device."""

import numpy as np
import pytest

from jaxpcam.data import pipeline as pipeline_lib
from jaxpcam.data import stain, transforms
from jaxpcam.data.pcam import open_split, read_all
from jaxpcam.data.transforms import Dihedral, StainJitter


def _images(n=6, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)


def test_deconvolution_is_skimages_ruifrok_johnston_matrix():
    np.testing.assert_allclose(stain.RGB_FROM_HED @ stain.HED_FROM_RGB, np.eye(3), atol=1e-12)
    # a pixel stained by haematoxylin alone deconvolves to haematoxylin alone, and back
    rgb = np.round(255 * stain.hed2rgb(np.array([0.05, 0.0, 0.0]))).astype(np.uint8)
    hed = stain.rgb2hed(rgb)
    assert hed[0] > 0.04 and abs(hed[1]) < 2e-3 and abs(hed[2]) < 2e-3
    assert np.allclose(stain.rgb2hed(np.array([255, 255, 255], np.uint8)), 0)  # white: no stain


def test_neutral_parameters_give_back_the_image():
    images = _images()
    neutral = stain.parameters(np.full((len(images), stain.UNIFORMS), 0.5), strength=0.7)
    np.testing.assert_array_equal(stain.perturb(images, neutral), images)


def test_scaling_one_stain_changes_its_density_by_that_factor():
    tissue = np.round(255 * stain.hed2rgb(np.full((1, 4, 4, 3), [0.04, 0.02, 0.0]))).astype(np.uint8)
    uniforms = np.full((1, stain.UNIFORMS), 0.5)
    uniforms[0, 0] = 1.0  # haematoxylin scale 1 + s
    out = stain.perturb(tissue, stain.parameters(uniforms, strength=0.5))
    before, after = stain.rgb2hed(tissue)[0, 0, 0], stain.rgb2hed(out)[0, 0, 0]
    assert after[0] == pytest.approx(1.5 * before[0], rel=0.05)
    assert after[1] == pytest.approx(before[1], abs=2e-3)


def test_strength_bounds_the_change_and_each_position_gets_its_own_draw():
    images = np.full((64, 4, 4, 3), 180, np.uint8)
    uniforms = transforms.uniforms(3, StainJitter.salt, np.arange(64), stain.UNIFORMS)
    assert uniforms.min() >= 0 and uniforms.max() < 1 and len(np.unique(uniforms[:, 0])) == 64
    small = stain.perturb(images, stain.parameters(uniforms, 0.02)).astype(int)
    large = stain.perturb(images, stain.parameters(uniforms, 0.3)).astype(int)
    assert 0 < np.abs(small - 180).max() < np.abs(large - 180).max()
    assert len({tuple(px) for px in large[:, 0, 0]}) > 32  # different images, different colours
    np.testing.assert_array_equal(uniforms[10:20], transforms.uniforms(3, StainJitter.salt, np.arange(10, 20), 8))


def test_device_perturbation_equals_the_host_one_within_one_level():
    import jax
    import jax.numpy as jnp

    images = np.random.default_rng(1).integers(0, 256, (32, 96, 96, 3), dtype=np.uint8)
    params = StainJitter(0.3).draw(5, np.arange(32))
    host = stain.perturb(images, params).astype(int)
    device = np.asarray(jax.jit(lambda x, p: stain.perturb(x, p, jnp))(images, params)).astype(int)
    assert np.abs(host - device).max() <= 1
    assert (host != device).mean() < 1e-3
    assert np.abs(host - images).mean() > 5  # it did change the images


def _stream(tiny_pcam, stain_strength=0.0, dihedral=True, **kw):
    augmentations = transforms.enabled({"augment": dihedral, "stain_augment": stain_strength})
    args = dict(batch_size=32, epochs=1, data_seed=5, augment_seed=9, balanced=True, transforms=augmentations)
    return pipeline_lib.train_dataset(open_split(tiny_pcam, "train"), **{**args, **kw})


def test_stain_off_leaves_the_stream_as_it_was_and_on_changes_only_colours(tiny_pcam):
    off = list(_stream(tiny_pcam, stain_strength=0.0))
    dihedral = list(_stream(tiny_pcam))
    stained = list(_stream(tiny_pcam, stain_strength=0.2))
    for a, b, c in zip(off, dihedral, stained, strict=True):
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["label"], c["label"])
        assert set(c) == {"image", "label", "mask"}
        assert np.abs(a["image"].astype(int) - c["image"]).mean() > 2
    assert not np.array_equal(off[0]["image"], stained[0]["image"])
    only_stain = next(iter(_stream(tiny_pcam, stain_strength=0.2, dihedral=False)))
    plain = next(iter(_stream(tiny_pcam, dihedral=False)))
    corr = np.corrcoef(plain["image"].ravel().astype(float), only_stain["image"].ravel().astype(float))[0, 1]
    assert corr > 0.8  # same pixels in the same places, recoloured


def test_stained_stream_is_resumable_and_worker_count_independent(tiny_pcam):
    full = list(_stream(tiny_pcam, stain_strength=0.2))
    resumed = list(_stream(tiny_pcam, stain_strength=0.2, start_step=3))
    workers = list(_stream(tiny_pcam, stain_strength=0.2, num_workers=2))
    for a, b in zip(full[3:], resumed, strict=True):
        np.testing.assert_array_equal(a["image"], b["image"])
    for a, b in zip(full, workers, strict=True):
        np.testing.assert_array_equal(a["image"], b["image"])
    other_seed = next(iter(_stream(tiny_pcam, stain_strength=0.2, augment_seed=10)))
    assert not np.array_equal(full[0]["image"], other_seed["image"])


def test_device_placement_gathers_the_host_stream_within_one_level(tiny_pcam):
    from jaxpcam.training.placement import ResidentSplit, gather_batch

    split = open_split(tiny_pcam, "train")
    augmentations = (Dihedral(), StainJitter(0.25))
    args = dict(batch_size=32, epochs=1, data_seed=3, augment_seed=4, balanced=True, transforms=augmentations)
    host = list(pipeline_lib.train_dataset(split, **args))
    indices = list(pipeline_lib.train_dataset(split, images=False, **args))
    assert indices[0]["transforms"]["stain"].shape == (32, stain.PARAMETERS)
    resident = ResidentSplit(read_all(split), augmentations)
    for h, d in zip(host, indices, strict=True):
        got = np.asarray(gather_batch(resident, d)["image"]).astype(int)
        assert np.abs(got - h["image"]).max() <= 1


def test_padding_rows_stay_zero_with_stain_augmentation(tiny_pcam):
    split = open_split(tiny_pcam, "valid")
    rows = np.array([[7, 3], [8, 5], [-1, 0]])
    batch = pipeline_lib.LoadBatch(split, (Dihedral(), StainJitter(0.3)), 11)(rows)
    assert not batch["image"][2].any() and batch["image"][:2].any()


def test_training_with_stain_augmentation_runs_on_both_placements(tiny_pcam, tmp_path):
    from conftest import metrics_without_timing, train_in_process

    for placement in ("host", "device"):
        extra = {"data.stain_augment": 0.2, "data.placement": placement, "training.epochs": 1}
        train_in_process(tmp_path / placement, tiny_pcam, **extra)
    host, device = (metrics_without_timing(tmp_path / p) for p in ("host", "device"))
    assert len(host) == len(device) == 1
    assert device[0]["train_loss"] == pytest.approx(host[0]["train_loss"], rel=1e-3)
    plain = tmp_path / "plain"
    train_in_process(plain, tiny_pcam, **{"data.placement": "host", "training.epochs": 1})
    assert metrics_without_timing(plain)[0]["train_loss"] != host[0]["train_loss"]
