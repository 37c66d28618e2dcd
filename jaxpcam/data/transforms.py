"""Batch augmentations, each defined once: its host form (numpy, in the Grain pipeline), its
device form (jax, in the jitted step with ``data.placement=device``) and, where it has them, its
test-time views (``--tta`` in evaluate and predict), side by side, registered under a name.

A transform is switched on by its key under ``data`` (``from_config``), and draws its per-image
parameters on the host (``draw``) from the run's augment stream (``Streams.augment_seed``) and
each record's stream position, so a batch is the same with any number of worker processes,
after a resume and on either placement: a device batch carries the parameters as
``batch["transforms"][name]`` and the device form applies them to the gathered images. The
enabled transforms apply to uint8 images (B, H, W, C) in registration order.

Adding an augmentation: a class here with ``@register`` (name, config key, stream salt, the
shape and dtype of its per-image parameters, ``draw``, ``host`` and ``device``), and its config
key with a default in jaxpcam/config/__init__.py (with a value check in config/checks.py if
needed). Nothing else names it.

Numpy only at import: Grain workers must not import jax, so the device forms and test-time
views take jax.numpy as their ``jnp`` argument.
"""

import dataclasses
import functools
from collections.abc import Iterator
from typing import ClassVar

import numpy as np

from jaxpcam.data import stain

REGISTRY: dict[str, type["Transform"]] = {}  # name -> transform class, in application order

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a counter-based hash, so each record's randomness is independent."""
    with np.errstate(over="ignore"):
        x = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK64
        x = ((x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK64
        x = ((x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK64
        return x ^ (x >> np.uint64(31))


def uniforms(seed: int, salt: int, positions: np.ndarray, count: int) -> np.ndarray:
    """(len(positions), count) numbers in [0, 1) from (seed, a transform's salt, stream position)."""
    keys = _mix64(_mix64(np.uint64(seed) ^ np.uint64(salt)) + np.arange(count, dtype=np.uint64))
    bits = _mix64(keys[None, :] ^ positions.astype(np.uint64)[:, None]) >> np.uint64(11)
    return bits.astype(np.float64) * 2.0**-53


class Transform:
    """What a registered batch transform defines (instances hold its settings from the config)."""

    name: ClassVar[str]  # its registry name, and its key in a device batch's "transforms"
    config_key: ClassVar[str]  # data.<config_key> switches it on
    salt: ClassVar[int]  # its own stream of the augment seed (``uniforms``)
    param_shape: ClassVar[tuple[int, ...]]  # per image, in a device batch
    param_dtype: ClassVar[type]
    device_tolerance: ClassVar[int] = 0  # how many levels the device form's images may differ by
    views: ClassVar[int] = 0  # test-time views (--tta), the first of them the image itself; 0: none
    view_words: ClassVar[str] = ""  # the views in messages, e.g. '8 flips/rotations'
    untrained_warning: ClassVar[str] = ""  # why --tta on a run trained without it may mislead

    @classmethod
    def from_config(cls, data_config) -> "Transform | None":
        """The transform as ``data_config`` sets it, or None when off (a dict or ConfigDict)."""
        raise NotImplementedError

    def draw(self, seed: int, positions: np.ndarray) -> np.ndarray:
        """Per-image parameters (len(positions), *param_shape) of this dtype."""
        raise NotImplementedError

    def host(self, images: np.ndarray, params: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def device(self, images, params, jnp):
        """The host form in jax: the same images, within ``device_tolerance`` levels."""
        raise NotImplementedError

    @staticmethod
    def view(images, k: int, jnp):
        """With ``views``: every image under test-time view k, 0 < k < views (a static int)."""
        raise NotImplementedError

    @staticmethod
    def view_problem(image_shape) -> str | None:
        """With ``views``: why a model taking ``image_shape`` cannot have them (else None)."""
        return None


def register(cls: type[Transform]) -> type[Transform]:
    """Class decorator: adds a transform to the registry, after those registered before it."""
    if cls.name in REGISTRY or any(other.salt == cls.salt for other in REGISTRY.values()):
        raise ValueError(f"transform {cls.name!r}: its name and its stream salt must be its own")
    REGISTRY[cls.name] = cls
    return cls


def enabled(data_config) -> tuple[Transform, ...]:
    """The training augmentations ``data_config`` switches on, in application order."""
    found = (cls.from_config(data_config) for cls in REGISTRY.values())
    return tuple(t for t in found if t is not None)


def test_time_transforms() -> tuple[type[Transform], ...]:
    """The registered transforms with test-time views, whatever a run trained with."""
    return tuple(cls for cls in REGISTRY.values() if cls.views)


def test_time_views(images, jnp) -> Iterator:
    """``images`` under every combination of the test-time views, the images themselves first."""
    return _views(images, test_time_transforms(), jnp)


def _views(images, transforms: tuple, jnp) -> Iterator:
    if not transforms:
        yield images
        return
    first, rest = transforms[0], transforms[1:]
    for k in range(first.views):
        yield from _views(images if k == 0 else first.view(images, k, jnp), rest, jnp)


def dihedral_codes(seed: int, positions: np.ndarray) -> np.ndarray:
    """One of the 8 flips/90-degree rotations per record, from (seed, stream position)."""
    keyed = _mix64(np.uint64(seed)) ^ positions.astype(np.uint64)
    return (_mix64(keyed) >> np.uint64(61)).astype(np.int64)


def apply_dihedral(images: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """images (B, H, W, C) with H == W; code k: rotate k % 4 quarter turns, then flip if k >= 4.

    Each pixel moves as one opaque C-channel item, which numpy copies about twice as fast as
    three strided channel bytes.
    """
    images = np.ascontiguousarray(images)
    pixel = np.dtype((np.void, images.dtype.itemsize * images.shape[-1]))
    out = np.empty_like(images)
    source, target = images.view(pixel)[..., 0], out.view(pixel)[..., 0]
    for code in np.unique(codes):
        sel = np.flatnonzero(codes == code)
        view = np.rot90(source[sel], k=int(code) % 4, axes=(1, 2))
        target[sel] = view[:, :, ::-1] if code >= 4 else view
    return out


@functools.lru_cache(maxsize=4)
def dihedral_table(height: int, width: int) -> np.ndarray:
    """(8, H*W) int32: for each dihedral code, the source pixel of every output pixel. Made by
    the host form itself, so the device applies exactly the same transforms."""
    pixels = np.arange(height * width, dtype=np.int32).reshape(1, height, width, 1)
    return np.concatenate([apply_dihedral(pixels, np.array([code])).reshape(1, -1) for code in range(8)])


@register
@dataclasses.dataclass(frozen=True)
class Dihedral(Transform):
    """data.augment: one of the 8 flips/90-degree rotations per image (code k rotates k % 4
    quarter turns, then flips left-right if k >= 4); at test time, all 8."""

    name = "dihedral"
    config_key = "augment"
    salt = 0  # its codes come from the seed by a construction of their own (dihedral_codes)
    param_shape, param_dtype = (), np.int32
    views = 8
    view_words = "8 flips/rotations"
    untrained_warning = "it never saw flipped or rotated images (for digits a rotated 6 is a 9)"

    @classmethod
    def from_config(cls, data_config) -> "Dihedral | None":
        return cls() if data_config.get("augment", True) else None  # runs from before the key: on

    def draw(self, seed: int, positions: np.ndarray) -> np.ndarray:
        return dihedral_codes(seed, positions).astype(np.int32)

    def host(self, images: np.ndarray, codes: np.ndarray) -> np.ndarray:
        return apply_dihedral(images, codes)

    def device(self, images, codes, jnp):
        b, h, w, c = images.shape
        source_pixel = jnp.asarray(dihedral_table(h, w))[codes]  # (B, H*W)
        return images.reshape(b, h * w, c)[jnp.arange(b)[:, None], source_pixel].reshape(images.shape)

    @staticmethod
    def view(images, k: int, jnp):
        """Every image under code k, as the host form moves it."""
        images = jnp.rot90(images, k=k % 4, axes=(1, 2))
        return images[:, :, ::-1] if k >= 4 else images

    @staticmethod
    def view_problem(image_shape) -> str | None:
        height, width = image_shape[:2]
        return None if height == width else f"needs square images; this model takes {height}x{width}"


@register
@dataclasses.dataclass(frozen=True)
class StainJitter(Transform):
    """data.stain_augment: H-E-DAB stain, contrast and brightness jitter of this strength
    (jaxpcam/data/stain.py)."""

    strength: float
    name = "stain"
    config_key = "stain_augment"
    salt = 0x57A1_9E5D_0000_0000
    param_shape, param_dtype = (stain.PARAMETERS,), np.float32
    device_tolerance = 1  # float rounding in the colour maths

    @classmethod
    def from_config(cls, data_config) -> "StainJitter | None":
        strength = data_config.get("stain_augment", 0.0)
        return cls(strength) if strength > 0 else None

    def draw(self, seed: int, positions: np.ndarray) -> np.ndarray:
        return stain.parameters(uniforms(seed, self.salt, positions, stain.UNIFORMS), self.strength)

    def host(self, images: np.ndarray, params: np.ndarray) -> np.ndarray:
        return stain.perturb(images, params)

    def device(self, images, params, jnp):
        return stain.perturb(images, params, jnp)
