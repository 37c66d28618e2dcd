"""jaxpcam.data.transforms: each registered augmentation's host and device forms agree, the
registry decides what a config switches on, and --tta's views are the dihedral group."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpcam.data import pipeline, transforms
from jaxpcam.data.transforms import REGISTRY, Dihedral, StainJitter
from jaxpcam.training.parallel import DataParallel

ALL_ON = {"augment": True, "stain_augment": 0.3}  # every registered transform switched on


def test_every_registered_transform_is_switched_on_by_its_own_config_key():
    on = transforms.enabled(ALL_ON)
    assert [t.name for t in on] == list(REGISTRY)  # registration order is application order
    for transform in on:
        off = {**ALL_ON, transform.config_key: type(ALL_ON[transform.config_key])(0)}
        assert transform.name not in [t.name for t in transforms.enabled(off)]


@pytest.mark.parametrize("name", list(REGISTRY))
def test_host_and_device_forms_agree_on_the_same_key_and_images(name):
    transform = REGISTRY[name].from_config(ALL_ON)
    images = np.random.default_rng(0).integers(0, 256, (16, 12, 12, 3), dtype=np.uint8)
    params = transform.draw(7, np.arange(100, 116))
    assert params.shape == (16, *transform.param_shape) and params.dtype == transform.param_dtype
    np.testing.assert_array_equal(params, transform.draw(7, np.arange(100, 116)))  # a function of the key
    assert not np.array_equal(params, transform.draw(8, np.arange(100, 116)))
    host = transform.host(images, params).astype(int)
    device = np.asarray(jax.jit(lambda x, p: transform.device(x, p, jnp))(images, params)).astype(int)
    assert np.abs(host - device).max() <= transform.device_tolerance
    assert (host != images).any()  # it did change the images


def test_runs_recorded_before_the_keys_existed_flipped_and_rotated_without_stain():
    assert transforms.enabled({}) == (Dihedral(),)
    assert transforms.enabled({"augment": False, "stain_augment": 0.0}) == ()
    assert transforms.enabled({"augment": False, "stain_augment": 0.1}) == (StainJitter(0.1),)


def test_a_transform_needs_a_name_and_a_stream_of_its_own():
    @dataclasses.dataclass(frozen=True)
    class Clash(StainJitter):
        name = "clash"

    with pytest.raises(ValueError, match="'clash': its name and its stream salt must be its own"):
        transforms.register(Clash)
    assert "clash" not in REGISTRY


def test_test_time_views_are_the_eight_dihedral_transforms_the_identity_first():
    images = np.random.default_rng(1).integers(0, 256, (3, 5, 5, 3), dtype=np.uint8)
    views = [np.asarray(v) for v in transforms.test_time_views(jnp.asarray(images), jnp)]
    assert len(views) == 8
    for code, view in enumerate(views):
        np.testing.assert_array_equal(view, transforms.apply_dihedral(images, np.full(3, code)))


def test_the_compiled_batch_shape_is_what_the_index_stream_hands_over():
    augmentations = transforms.enabled(ALL_ON)
    rows = pipeline.BatchIndices(np.zeros(50, np.int32), augmentations, 3)(np.array([[0, 4], [1, 9]]))
    abstract = DataParallel.over_all_devices().abstract_batch(2, (12, 12, 3), True, augmentations)
    shapes = lambda tree: jax.tree.map(lambda x: (x.shape, np.dtype(x.dtype)), tree)  # noqa: E731
    assert shapes(abstract) == shapes(rows)
