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
