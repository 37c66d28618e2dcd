"""Every random stream of a run, split once from its seed: below training and evaluation (the
digits task's train/valid split uses the data seed too)."""

import flax.struct
import jax


@flax.struct.dataclass
class Streams:
    """Independent randomness per purpose, all split once from ``config.seed``.

    Keys for jax; plain integer seeds for the numpy-only data pipeline.
    """

    init: jax.Array
    dropout: jax.Array
    data_seed: int = flax.struct.field(pytree_node=False)
    augment_seed: int = flax.struct.field(pytree_node=False)


def make_streams(seed: int) -> Streams:
    init, dropout, data, augment = jax.random.split(jax.random.key(seed), 4)
    as_seed = lambda k: int(jax.random.randint(k, (), 0, 2**31 - 1))  # noqa: E731
    return Streams(init, dropout, as_seed(data), as_seed(augment))
