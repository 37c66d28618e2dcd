"""What a model sees: uint8 pixels normalized per channel. The inference half of the train state,
below training and evaluation (a checkpoint carries the numbers it was trained with)."""

import flax.struct
import jax
import jax.numpy as jnp


@flax.struct.dataclass
class Normalization:
    """Per-channel mean and std in pixel units (0..255): ``(x - mean) / std``."""

    mean: jax.Array
    std: jax.Array


def fixed_normalization(channels: int = 3) -> Normalization:
    """The course's ``(x / 255 - 0.5) / 0.5``."""
    return Normalization(jnp.full((channels,), 127.5, jnp.float32), jnp.full((channels,), 127.5, jnp.float32))


def normalize(images: jax.Array, norm: Normalization) -> jax.Array:
    return (images.astype(jnp.float32) - norm.mean) / norm.std
