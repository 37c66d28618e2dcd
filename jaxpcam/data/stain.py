"""Stain and colour augmentation in haematoxylin-eosin-DAB space (``data.stain_augment``).

Colour deconvolution (Ruifrok & Johnston 2001) with the H-E-DAB stain vectors that
``skimage.color.rgb2hed`` uses: a pixel's optical density ``od = -ln(max(rgb / 255, 1e-6))``
is the stain densities times ``RGB_FROM_HED``. Per image, with strength s, every stain's
density is scaled by ``a ~ U(1-s, 1+s)`` and shifted by ``b ~ U(-s, s) * SHIFT_OD`` (the
perturbation of Tellez et al. 2019, "HED" augmentation), then back to RGB, followed by a
contrast factor ``U(1 - s * CONTRAST, 1 + s * CONTRAST)`` around the image's mean and a
brightness shift ``U(-s, s) * BRIGHTNESS`` levels; clipped to 0..255 and rounded to uint8.

Unlike ``rgb2hed``, the densities are not clipped at 0 in between: the whole change is one
linear map of the optical density per image, ``od @ T + o``, so a = 1, b = 0 gives back the
image. ``T`` and ``o`` are made on the host in float64 from the per-image random numbers
(``parameters``) and travel with the batch; ``perturb`` is written once for numpy (the Grain
pipeline) and jax.numpy (``data.placement=device``, its matmul at float32 precision, not a GPU's
TF32), so both give the same uint8 images up to float rounding (at most 1 level apart).
Densities here are natural-log optical densities (``rgb2hed`` divides them by ln(1e6) = 13.8).
Numpy only at import: Grain workers must not import jax.
"""

import numpy as np

# Rows: haematoxylin, eosin, DAB as optical density in R, G, B (skimage.color.rgb_from_hed).
RGB_FROM_HED = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]])
HED_FROM_RGB = np.linalg.inv(RGB_FROM_HED)
SHIFT_OD = 0.5  # the density shift at s = 1: about a stain's optical density in tissue
CONTRAST = 0.5  # contrast factor in [1 - s/2, 1 + s/2]
BRIGHTNESS = 64.0  # brightness shift in [-64 s, 64 s] levels
UNIFORMS = 8  # random numbers per image: 3 scales, 3 shifts, contrast, brightness
PARAMETERS = 14  # per image: -T (3x3, row-major), ln 255 - o (3), contrast, brightness
_FLOOR = 1e-6  # skimage's floor before the logarithm
OD_TABLE = (-np.log(np.maximum(np.arange(256) / 255.0, _FLOOR))).astype(np.float32)  # uint8 -> od


def rgb2hed(rgb: np.ndarray) -> np.ndarray:
    """uint8 (..., 3) -> stain densities (..., 3), exactly as ``skimage.color.rgb2hed`` computes
    them (densities in units of -ln(1e-6), clipped at 0). For checks and plots; training uses
    ``perturb``."""
    rgb = np.maximum(np.asarray(rgb, np.float64) / 255.0, _FLOOR)
    return np.maximum((np.log(rgb) / np.log(_FLOOR)) @ HED_FROM_RGB, 0)


def hed2rgb(hed: np.ndarray) -> np.ndarray:
    """Stain densities (..., 3) -> RGB floats in [0, 1], as ``skimage.color.hed2rgb``."""
    return np.clip(np.exp((np.asarray(hed, np.float64) * np.log(_FLOOR)) @ RGB_FROM_HED), 0, 1)


def parameters(uniforms: np.ndarray, strength: float) -> np.ndarray:
    """(B, UNIFORMS) numbers in [0, 1) -> (B, PARAMETERS) float32 per-image parameters."""
    spread = strength * (2.0 * np.asarray(uniforms, np.float64) - 1.0)  # U(-s, s)
    scale, shift = 1.0 + spread[:, 0:3], spread[:, 3:6] * SHIFT_OD
    # od' = (od @ HED_FROM_RGB * scale + shift) @ RGB_FROM_HED = od @ T + o, and perturb takes
    # 255 exp(-od') as exp(od @ -T + (ln 255 - o)): the parameters hold -T and ln 255 - o.
    transform = -np.einsum("jc,bc,ck->bjk", HED_FROM_RGB, scale, RGB_FROM_HED).reshape(-1, 9)
    offset = np.log(255.0) - shift @ RGB_FROM_HED
    contrast, brightness = 1.0 + CONTRAST * spread[:, 6:7], BRIGHTNESS * spread[:, 7:8]
    return np.concatenate([transform, offset, contrast, brightness], axis=1).astype(np.float32)


def perturb(images, params, xp=np):
    """uint8 images (B, H, W, 3) and ``parameters`` (B, PARAMETERS) -> uint8 images; ``xp`` is
    numpy or jax.numpy (the same operations in the same order on both)."""
    b = images.shape[0]
    od = xp.asarray(OD_TABLE)[images.reshape(b, -1, 3)]  # (B, HW, 3) float32
    transform = params[:, 0:9].reshape(b, 3, 3)
    # float32 on every backend: a GPU's default precision would multiply in TF32
    mixed = xp.matmul(od, transform) if xp is np else xp.matmul(od, transform, precision="highest")
    rgb = xp.exp(mixed + params[:, None, 9:12])  # 255 exp(-od')
    mean = rgb.mean(axis=(1, 2), keepdims=True)
    contrast, brightness = params[:, None, 12:13], params[:, None, 13:14]
    # (rgb - mean) * contrast + mean + brightness, + 0.5 so that truncating rounds to nearest
    rgb = rgb * contrast + (mean * (1 - contrast) + (brightness + 0.5))
    return xp.clip(rgb, 0, 255).astype(xp.uint8).reshape(images.shape)
