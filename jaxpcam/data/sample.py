"""The built-in sample: a synthetic, deterministic data set written in the exact PCAM format.

Tiles imitate H&E patches: an eosin-stained tissue field with holes, hematoxylin-stained nuclei,
rendered through Beer-Lambert optics with per-slide stain vectors and brightness (so dark and
bright slides exist). A tile is positive when a tumour nucleus (larger, darker, clustered) has
its centre in the central 32x32 region, PCAM's own definition; tumour outside the centre,
lymphocyte clusters and a little label noise make it learnable but not trivial.

Each split comes from its own slides (no slide in two splits), as in PCAM.

Versions (``data.sample_version``; each has its own cache folder, and a version, once released,
never changes):

- 1: every split's slides are drawn alike: stain vectors near Ruifrok & Johnston's, brightness
  varies per slide.
- 2: stain varies more from slide to slide (vectors, and the amount of each stain), and the test
  split comes from another lab: stain vectors near Macenko et al.'s reference (the defaults of
  common stain-normalisation tools), less haematoxylin and more eosin. Train and valid come from
  the first lab, so valid measures new slides and test a new lab, the shift that stain
  augmentation is meant for.
"""

import dataclasses
import os
import shutil
import tempfile
from pathlib import Path

import h5py
import numpy as np

from jaxpcam.core.errors import UserError
from jaxpcam.core.files import user_cache_dir
from jaxpcam.core.reporting import log
from jaxpcam.data.pcam import IMAGE_SHAPE, split_paths

DEFAULT_VERSION = 1  # the versions are _LABS' keys (config.SAMPLE_VERSIONS)
SAMPLE_SIZES = {"train": 8192, "valid": 1024, "test": 1024}
_SPLIT_SEEDS = {"train": 0, "valid": 1, "test": 2}
_SIDE = IMAGE_SHAPE[0]
_CENTRE = slice(32, 64)
_CHUNK = 256


def cache_dir() -> Path:
    """Where the built-in sample lives: $JAXPCAM_DATA_CACHE, else $XDG_CACHE_HOME/jaxpcam."""
    if os.environ.get("JAXPCAM_DATA_CACHE"):
        return Path(os.environ["JAXPCAM_DATA_CACHE"]).expanduser()
    return user_cache_dir()


def sample_dir(version: int = DEFAULT_VERSION) -> Path:
    return cache_dir() / f"pcam-sample-v{version}"


@dataclasses.dataclass(frozen=True)
class _Lab:
    """How a lab's slides are stained: what per-slide stain vectors, stain amounts and brightness
    vary around. Version 1 draws no amounts (``amount_sd`` None), so its slides stay as released."""

    h_vector: tuple[float, float, float]  # haematoxylin optical density in R, G, B
    e_vector: tuple[float, float, float]  # eosin
    vector_sd: float
    log_amounts: tuple[float, float] = (0.0, 0.0)  # log of the mean haematoxylin and eosin amounts
    amount_sd: float | None = None  # per-slide log-normal spread of the amounts
    log_brightness: float = 0.0


_RUIFROK = (0.65, 0.70, 0.29), (0.07, 0.99, 0.11)  # skimage's rgb_from_hed rows
_MACENKO = (0.5626, 0.7201, 0.4062), (0.2159, 0.8012, 0.5581)  # Macenko et al. 2009's reference
_LABS = {
    1: dict.fromkeys(("train", "valid", "test"), _Lab(*_RUIFROK, vector_sd=0.08)),
    2: {
        "train": (lab_a := _Lab(*_RUIFROK, vector_sd=0.10, amount_sd=0.2)),
        "valid": lab_a,
        "test": _Lab(*_MACENKO, vector_sd=0.10, log_amounts=(np.log(0.8), np.log(1.25)), amount_sd=0.2),
    },
}


@dataclasses.dataclass(frozen=True)
class _Slides:
    """Per-slide appearance: stain optical-density vectors, brightness, tissue and nucleus density."""

    h_stain: np.ndarray  # (S, 3)
    e_stain: np.ndarray  # (S, 3)
    brightness: np.ndarray  # (S,)
    tissue: np.ndarray  # (S,)
    nuclei_rate: np.ndarray  # (S,)


def _draw_slides(rng: np.random.Generator, count: int, lab: _Lab) -> _Slides:
    h = np.abs(np.array(lab.h_vector) + rng.normal(0, lab.vector_sd, (count, 3)))
    e = np.abs(np.array(lab.e_vector) + rng.normal(0, lab.vector_sd, (count, 3)))
    # A few dark (under-exposed) and bright (washed-out) slides, most near 1.
    brightness = np.exp(rng.normal(lab.log_brightness, 0.2, count)).clip(0.5, 1.35)
    tissue, nuclei_rate = rng.uniform(0.5, 1.1, count), rng.uniform(25, 55, count)
    h, e = h / np.linalg.norm(h, axis=1, keepdims=True), e / np.linalg.norm(e, axis=1, keepdims=True)
    if lab.amount_sd is not None:  # how much of each stain a slide took up (version 2)
        amounts = np.exp(rng.normal(lab.log_amounts, lab.amount_sd, (count, 2)))
        h, e = h * amounts[:, :1], e * amounts[:, 1:]
    return _Slides(h_stain=h, e_stain=e, brightness=brightness, tissue=tissue, nuclei_rate=nuclei_rate)


def _gaussian_filter_fft(sigma: float) -> np.ndarray:
    """rfft2 of a periodic Gaussian scaled to peak 1, so a unit impulse becomes a blob of height 1."""
    d = np.minimum(np.arange(_SIDE), _SIDE - np.arange(_SIDE)).astype(np.float64)
    kernel = np.exp(-(d[:, None] ** 2 + d[None, :] ** 2) / (2 * sigma**2))
    return np.fft.rfft2(kernel).astype(np.complex64)


_BLUR = {s: _gaussian_filter_fft(s) for s in (1.0, 1.4, 2.1, 8.0)}


def _blur(impulses: np.ndarray, sigma: float) -> np.ndarray:
    return np.fft.irfft2(np.fft.rfft2(impulses) * _BLUR[sigma], s=(_SIDE, _SIDE))


def _scatter(n: int, tile: np.ndarray, ys: np.ndarray, xs: np.ndarray, amp: np.ndarray) -> np.ndarray:
    field = np.zeros((n, _SIDE, _SIDE), np.float32)
    ok = (ys >= 0) & (ys < _SIDE) & (xs >= 0) & (xs < _SIDE)
    np.add.at(field, (tile[ok], ys[ok], xs[ok]), amp[ok])
    return field


def _nuclei(rng, n, rate) -> tuple[np.ndarray, ...]:
    counts = rng.poisson(rate)
    tile = np.repeat(np.arange(n), counts)
    ys, xs = rng.integers(0, _SIDE, (2, len(tile)))
    return tile, ys, xs, rng.uniform(0.5, 1.0, len(tile))


def _clusters(rng, n, active, centre_lo, centre_hi, count_range, spread_range):
    """Clustered nuclei around one centre per active tile; returns (tile, y, x)."""
    idx = np.flatnonzero(active)
    cy, cx = rng.uniform(centre_lo, centre_hi, (2, len(idx)))
    counts = rng.integers(*count_range, len(idx))
    spread = np.repeat(rng.uniform(*spread_range, len(idx)), counts)
    tile = np.repeat(idx, counts)
    ys = np.rint(np.repeat(cy, counts) + rng.normal(0, 1, len(tile)) * spread).astype(int)
    xs = np.rint(np.repeat(cx, counts) + rng.normal(0, 1, len(tile)) * spread).astype(int)
    return tile, ys, xs


def _render_chunk(rng: np.random.Generator, slides: _Slides, slide_ids: np.ndarray):
    """Images (n, 96, 96, 3) uint8, labels (n,), and whether any tumour is in the tile."""
    n = len(slide_ids)
    # Tissue: smooth random field thresholded into tissue and empty space (lumen, fat).
    field = _blur(rng.standard_normal((n, _SIDE, _SIDE), np.float32), 8.0)
    field /= field.std(axis=(1, 2), keepdims=True) + 1e-9
    tissue = np.clip(1.1 + 0.55 * field, 0, 1) * slides.tissue[slide_ids, None, None]

    normal = _nuclei(rng, n, slides.nuclei_rate[slide_ids])
    small = rng.random(len(normal[0])) < 0.5
    hema = sum(_blur(_scatter(n, *(a[sel] for a in normal)), sigma) for sel, sigma in ((small, 1.0), (~small, 1.4)))

    # Half the tiles get tumour aimed at the centre, a quarter tumour aimed at the border.
    kind = rng.random(n)
    centre_tumour, border_tumour = kind < 0.5, (kind >= 0.5) & (kind < 0.75)
    t_tile, t_y, t_x = _clusters(rng, n, centre_tumour, 36, 60, (1, 9), (2.0, 8.0))
    b = _clusters(rng, n, border_tumour, 0, 96, (3, 14), (2.0, 7.0))
    in_centre = (b[1] >= 22) & (b[1] < 74) & (b[2] >= 22) & (b[2] < 74)
    keep = ~np.isin(b[0], np.unique(b[0][in_centre]))  # border clusters must not reach the centre
    t_tile, t_y, t_x = (np.concatenate([a, c[keep]]) for a, c in zip((t_tile, t_y, t_x), b, strict=True))
    amplitude = rng.uniform(0.8, 1.25, len(t_tile))
    hema += _blur(_scatter(n, t_tile, t_y, t_x, amplitude), 2.1)

    # Hard negatives: dense clusters of small dark lymphocytes anywhere, centre included.
    lymph = rng.random(n) < 0.5
    l_tile, l_y, l_x = _clusters(rng, n, lymph, 24, 72, (12, 40), (3.0, 9.0))
    hema += _blur(_scatter(n, l_tile, l_y, l_x, rng.uniform(0.9, 1.3, len(l_tile))), 1.0)

    hit = (t_y >= _CENTRE.start) & (t_y < _CENTRE.stop) & (t_x >= _CENTRE.start) & (t_x < _CENTRE.stop)
    labels = np.zeros(n, np.uint8)
    labels[np.unique(t_tile[hit])] = 1
    any_tumour = np.zeros(n, bool)
    any_tumour[np.unique(t_tile)] = True

    hema = np.clip(hema, 0, 1.6) * (0.45 + 0.55 * tissue)
    eosin = 0.9 * tissue * rng.uniform(0.6, 1.3, (n, 1, 1))
    density = (
        1.8 * hema[..., None] * slides.h_stain[slide_ids, None, None, :]
        + eosin[..., None] * slides.e_stain[slide_ids, None, None, :]
    )
    light = 245.0 * slides.brightness[slide_ids, None, None, None] * np.exp(-density)
    light += 4.0 * rng.standard_normal(light.shape, np.float32)
    return np.clip(np.rint(light), 0, 255).astype(np.uint8), labels, any_tumour


def write_sample(
    out_dir: Path, sizes: dict[str, int] | None = None, seed: int = 0, version: int = DEFAULT_VERSION
) -> None:
    """Writes the six PCAM files (and the meta CSVs) for ``sizes`` into ``out_dir``.

    Deterministic for a given seed and numpy version. ``x`` is uint8, contiguous and
    uncompressed, ``y`` is uint8 (N, 1, 1, 1), exactly like the official release.
    """
    sizes = sizes or SAMPLE_SIZES
    out_dir.mkdir(parents=True, exist_ok=True)
    for split, n in sizes.items():
        rng = np.random.default_rng([seed, _SPLIT_SEEDS[split], version])
        n_slides = max(2, n // 160)
        slides = _draw_slides(rng, n_slides, _LABS[version][split])
        slide_ids = np.sort(rng.integers(0, n_slides, n))
        x_path, y_path = split_paths(out_dir, split)
        meta = []
        with h5py.File(x_path, "w") as fx, h5py.File(y_path, "w") as fy:
            x = fx.create_dataset("x", (n, *IMAGE_SHAPE), np.uint8)
            y = fy.create_dataset("y", (n, 1, 1, 1), np.uint8)
            for start in range(0, n, _CHUNK):
                ids = slide_ids[start : start + _CHUNK]
                images, labels, any_tumour = _render_chunk(rng, slides, ids)
                flip = rng.random(len(labels)) < 0.02  # annotation noise, as in real labels
                labels = np.where(flip, 1 - labels, labels).astype(np.uint8)
                x[start : start + len(ids)] = images
                y[start : start + len(ids)] = labels.reshape(-1, 1, 1, 1)
                meta += [(int(a), int(b), int(s)) for a, b, s in zip(any_tumour, labels, ids, strict=True)]
        with open(out_dir / f"camelyonpatch_level_2_split_{split}_meta.csv", "w") as f:
            f.write("index,coord_y,coord_x,tumor_patch,center_tumor_patch,wsi\n")
            for i, (tumour, centre, slide) in enumerate(meta):
                f.write(f"{i},0,0,{bool(tumour or centre)},{bool(centre)},synthetic_{split}_{slide:03d}\n")


def is_sample(folder: Path) -> bool:
    """Whether ``folder`` holds files of the built-in sample (copied, moved or the tests' tiny
    ones): its meta CSVs name synthetic slides, which real PCAM's never do."""
    for split in _SPLIT_SEEDS:
        meta = folder / f"camelyonpatch_level_2_split_{split}_meta.csv"
        try:
            with open(meta) as f:
                f.readline()
                return f.readline().rstrip().rsplit(",", 1)[-1].startswith("synthetic_")
        except (OSError, UnicodeDecodeError):
            continue
    return False


def _sample_files() -> set[str]:
    names = {"COMPLETE"}
    for split in _SPLIT_SEEDS:
        names |= {p.name for p in split_paths(Path(), split)} | {f"camelyonpatch_level_2_split_{split}_meta.csv"}
    return names


def _clear_unfinished(target: Path) -> None:
    """Removes a sample folder left without COMPLETE, if it holds nothing but sample files (they
    are remade); a folder holding anything else is the user's: refused, never deleted."""
    if not target.exists():
        return
    others = sorted(p.name for p in target.iterdir() if p.name not in _sample_files()) if target.is_dir() else []
    if others or not target.is_dir():
        shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
        raise UserError(f"{target} is not a complete built-in sample and holds other files ({shown or 'a file'}): "
                        "move them, or set JAXPCAM_DATA_CACHE to another folder")  # fmt: skip
    shutil.rmtree(target)


def ensure_sample(version: int = DEFAULT_VERSION) -> Path:
    """The built-in sample's folder, writing it first if absent (atomically: temp dir + rename)."""
    target = sample_dir(version)
    if (target / "COMPLETE").is_file():
        return target
    _clear_unfinished(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    log(f"writing the built-in synthetic PCAM sample (version {version}) to {target} (once; set "
        "JAXPCAM_DATA_CACHE to move it)")  # fmt: skip
    tmp = Path(tempfile.mkdtemp(prefix=".sample-", dir=target.parent))
    try:
        write_sample(tmp, version=version)
        (tmp / "COMPLETE").write_text(f"jaxpcam sample v{version}\n")
        tmp.chmod(0o755)  # mkdtemp's 0o700 would keep a shared cache from the group
        try:
            tmp.rename(target)
        except OSError:
            if not (target / "COMPLETE").is_file():  # another process did not win the race: retry
                _clear_unfinished(target)
                tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
