"""A small conv net: a patchify stem, (3x3 conv -> ReLU -> 2x2 max-pool) stages, a dense head.

The head flattens the final feature map instead of global pooling: PCAM's label is about the
centre 32x32 region, so the network must know where a feature is.
"""

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp


def max_pool_2x2(x: jnp.ndarray) -> jnp.ndarray:
    """2x2 stride-2 max-pool of NHWC maps, as the maximum of four strided views.

    Same values as ``nn.max_pool(x, (2, 2), strides=(2, 2))``. Its gradient is an elementwise
    select instead of XLA's select-and-scatter, which on CPU cost 7x more (benchmarks/README.md).
    On an exact tie the gradient is shared rather than given to the first maximum; after a ReLU
    the tied values are zeros, whose gradient the ReLU drops anyway.
    """
    x = x[:, : x.shape[1] // 2 * 2, : x.shape[2] // 2 * 2]
    rows = jnp.maximum(x[:, 0::2], x[:, 1::2])
    return jnp.maximum(rows[:, :, 0::2], rows[:, :, 1::2])


class CNN(nn.Module):
    conv_features: Sequence[int] = (32, 64, 128)  # the stem's width, then each 3x3 stage's
    hidden_units: Sequence[int] = (128,)
    dropout_rate: float = 0.2
    num_classes: int = 1
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, images: jnp.ndarray, *, train: bool) -> jnp.ndarray:
        x = images.astype(self.dtype)
        # A 4x4 stride-4 "patchify" stem: nuclei are 2-5 px across, so it keeps what matters
        # while cutting the cost of every later conv 16x.
        x = nn.relu(nn.Conv(self.conv_features[0], (4, 4), strides=4, padding="VALID", dtype=self.dtype)(x))
        for features in self.conv_features[1:]:
            x = nn.relu(nn.Conv(features, (3, 3), dtype=self.dtype)(x))
            x = max_pool_2x2(x)
        x = x.reshape((x.shape[0], -1))
        for units in self.hidden_units:
            x = nn.relu(nn.Dense(units, dtype=self.dtype)(x))
            x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        return nn.Dense(self.num_classes, dtype=self.dtype)(x).astype(jnp.float32)


Model = CNN
