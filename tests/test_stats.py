import numpy as np

from jaxpcam.data.pcam import open_split
from jaxpcam.data.stats import channel_stats


def test_channel_stats_match_numpy_over_the_whole_split(tiny_pcam):
    train = open_split(tiny_pcam, "train")
    images = train.read(np.arange(len(train))).astype(np.float64)
    mean, std = channel_stats(train)
    np.testing.assert_allclose(mean, images.mean(axis=(0, 1, 2)), rtol=1e-5)
    np.testing.assert_allclose(std, images.std(axis=(0, 1, 2)), rtol=1e-4)
    assert mean.shape == (3,) and mean.dtype == np.float32


def test_train_stats_are_cached_per_file_and_manifest(tiny_pcam, tmp_path, messages):
    from jaxpcam.data.stats import cached_channel_stats

    train = open_split(tiny_pcam, "train")
    first = cached_channel_stats(train, "file-a|all", [tmp_path])
    assert len(list(tmp_path.glob("train_stats-*.json"))) == 1
    again = cached_channel_stats(train, "file-a|all", [tmp_path])
    np.testing.assert_array_equal(first[0], again[0])
    assert "from" in messages[-1]  # read back, not recomputed
    cached_channel_stats(train, "file-a|manifest-b", [tmp_path])
    assert len(list(tmp_path.glob("train_stats-*.json"))) == 2  # a filtered run gets its own numbers
