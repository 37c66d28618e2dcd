"""The course MLP: flatten -> (Dense -> ReLU -> Dropout) x len(hidden_units) -> logits."""

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp


class MLP(nn.Module):
    hidden_units: Sequence[int] = (512, 256)
    dropout_rate: float = 0.2
    num_classes: int = 1  # the task's logits: 1 (sigmoid) or one per class
    dtype: jnp.dtype = jnp.float32  # compute dtype; parameters stay float32

    @nn.compact
    def __call__(self, images: jnp.ndarray, *, train: bool) -> jnp.ndarray:
        x = images.reshape((images.shape[0], -1)).astype(self.dtype)
        for units in self.hidden_units:
            x = nn.relu(nn.Dense(units, dtype=self.dtype)(x))
            x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        return nn.Dense(self.num_classes, dtype=self.dtype)(x).astype(jnp.float32)


Model = MLP
