"""The drift check on the built-in sample's held-out slides: rarely a false alarm on a batch of
one new slide's tiles, and a warning on a real brightness or stain shift. Also the profile's
slide ids (the meta CSV's ``wsi`` column) and its fallback without them."""

import numpy as np
import pytest

from jaxpcam.data.manifest import FilteredSplit
from jaxpcam.data.pcam import open_split, read_all
from jaxpcam.data.profile import intensity_profile, meta_path, split_slide_ids
from jaxpcam.data.sample import write_sample
from jaxpcam.data.stats import image_features
from jaxpcam.evaluation.drift import FALSE_ALARM, check_drift

SIZES = {"train": 4096, "valid": 1024, "test": 1024}  # 25 training slides, 12 held-out ones


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    out = tmp_path_factory.mktemp("drift_sample")
    write_sample(out, SIZES, seed=3)
    return out


def _warns(profile, chunks) -> np.ndarray:
    return np.array([check_drift(profile, image_features(c)).drifted for c in chunks])


def _consecutive(images, size):
    return [images[s : s + size] for s in range(0, len(images) - size + 1, size)]


def test_held_out_slides_pass_at_the_stated_rate_and_real_shifts_fire(sample):
    profile = intensity_profile(open_split(sample, "train"))
    assert profile["spread_from"] == "slides" and profile["groups"] == 25
    held_out = [read_all(open_split(sample, split)) for split in ("valid", "test")]
    batches = [c for images in held_out for c in _consecutive(images, 20)]
    assert len(batches) == 102
    # Built for at most 1%; 3 of 102 would already be a clear excess (the old check warned on ~90%).
    assert _warns(profile, batches).sum() <= 2
    large = [c for images in held_out for c in _consecutive(images, 200)]
    darker = [np.rint(c * 0.5).astype(np.uint8) for c in large]  # half the exposure
    # Another stain colour: optical density of red x0.3, green x1, blue x3 (Beer-Lambert optics).
    light = [np.clip(c.astype(np.float64), 1, 255) / 255 for c in large]
    stained = [np.rint(255 * x ** np.array([0.3, 1.0, 3.0])).astype(np.uint8) for x in light]
    assert _warns(profile, darker).all() and _warns(profile, stained).all()
    check = check_drift(profile, image_features(stained[0]))
    assert check.p_value < FALSE_ALARM and "200 images" in check.message()


def test_profile_groups_by_slide_from_the_meta_csv(sample):
    train = open_split(sample, "train")
    slides = split_slide_ids(train)
    names = np.loadtxt(meta_path(train.x_path), delimiter=",", skiprows=1, usecols=5, dtype=str)
    assert len(slides) == len(train) and len(np.unique(slides)) == len(np.unique(names)) == 25
    assert all(len(np.unique(names[slides == s])) == 1 for s in np.unique(slides))  # one name per id
    kept = np.arange(5, len(train), 7)
    np.testing.assert_array_equal(split_slide_ids(FilteredSplit(train, kept)), slides[kept])  # data.filter


def test_without_a_meta_csv_the_profile_uses_runs_of_consecutive_images(tiny_pcam, tmp_path, messages):
    train = open_split(tiny_pcam, "train")
    with_slides = intensity_profile(train)
    assert with_slides["spread_from"] == "slides"
    for name in ("camelyonpatch_level_2_split_train_x.h5", "camelyonpatch_level_2_split_train_y.h5"):
        (tmp_path / name).symlink_to(tiny_pcam / name)
    meta = tmp_path / "camelyonpatch_level_2_split_train_meta.csv"
    meta.write_text("index,wsi\n0,a\n")  # lists 1 image of 256
    profile = intensity_profile(open_split(tmp_path, "train"))
    assert profile["spread_from"] == "runs" and profile["groups"] == 8  # 256 images, runs of 32
    assert any("lists 1 images, the split holds 256" in m for m in messages)
    meta.unlink()
    again = intensity_profile(open_split(tmp_path, "train"))
    assert again == profile
    brightness = again["features"]["brightness"]
    assert brightness["between_var"] >= 0 and brightness["within_var"] > 0
