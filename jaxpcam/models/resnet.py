"""A ResNet (basic blocks, ResNet-18 layout by default) with GroupNorm instead of BatchNorm.

GroupNorm keeps the model stateless: there are no running batch statistics to thread through
the train state, so the train step, checkpoints and data-parallel training stay the same for
every model, and results do not depend on how a global batch is split over devices
(BatchNorm's statistics would be per device). Kolesnikov et al. (BiT) train ResNets this way.
"""

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp


def _group_norm(features: int, dtype) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=min(32, features // 4) or 1, dtype=dtype)


class BasicBlock(nn.Module):
    features: int
    strides: int = 1
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        conv = lambda f, k, s: nn.Conv(f, k, strides=s, use_bias=False, dtype=self.dtype)  # noqa: E731
        y = conv(self.features, (3, 3), self.strides)(x)
        y = nn.relu(_group_norm(self.features, self.dtype)(y))
        y = conv(self.features, (3, 3), 1)(y)
        y = _group_norm(self.features, self.dtype)(y)
        if x.shape[-1] != self.features or self.strides != 1:
            x = conv(self.features, (1, 1), self.strides)(x)
            x = _group_norm(self.features, self.dtype)(x)
        return nn.relu(x + y)


class ResNet(nn.Module):
    conv_features: Sequence[int] = (64, 128, 256, 512)  # each stage's width
    resnet_blocks: Sequence[int] = (2, 2, 2, 2)  # basic blocks per stage (2, 2, 2, 2 = ResNet-18)
    num_classes: int = 1
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, images: jnp.ndarray, *, train: bool) -> jnp.ndarray:
        del train  # no dropout or batch statistics; the argument keeps one model interface
        x = images.astype(self.dtype)
        # 96x96 tiles: a 3x3 stride-1 stem instead of ImageNet's 7x7/2 + max-pool keeps the
        # 2-5 px nuclei; the stages then halve the resolution 96 -> 48 -> 24 -> 12.
        x = nn.Conv(self.conv_features[0], (3, 3), use_bias=False, dtype=self.dtype)(x)
        x = nn.relu(_group_norm(self.conv_features[0], self.dtype)(x))
        for stage, (features, blocks) in enumerate(zip(self.conv_features, self.resnet_blocks, strict=True)):
            for block in range(blocks):
                strides = 2 if stage > 0 and block == 0 else 1
                x = BasicBlock(features, strides, self.dtype)(x)
        x = x.mean(axis=(1, 2))
        return nn.Dense(self.num_classes, dtype=self.dtype)(x).astype(jnp.float32)


Model = ResNet


def config_problem(model_config) -> tuple[str, str] | None:
    """One block count per stage (jaxpcam/models/__init__.py)."""
    stages = len(model_config.conv_features)
    if len(model_config.resnet_blocks) != stages:
        return "resnet_blocks", f"{stages} positive integers, one per model.conv_features stage"
    return None
