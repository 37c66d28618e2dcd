"""The training data's intensity profile, recorded in every checkpoint for drift checks at
inference (:mod:`jaxpcam.evaluation.drift`).

Per feature (channel means, brightness, contrast; :func:`jaxpcam.data.stats.image_features`) the
profile keeps the spread that a batch from a *new slide* shows: the variance of per-slide means
(slides differ in stain and brightness) and the variance of images within a slide, so that the
mean of ``n`` images from a new slide varies by ``between + within / n``. Slides come from the
``wsi`` column of PCAM's ``..._meta.csv`` (the built-in sample writes one too); without it,
contiguous runs of training images stand in for slides (predict sees the consecutive tiles of a
file; in a file ordered by slide these are mostly one slide, in a shuffled file the between-slide
spread comes out near 0 and the check is strict).
"""

import csv
from pathlib import Path

import numpy as np

from jaxpcam.core.reporting import log
from jaxpcam.data.stats import image_features

PROFILE_QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
PROFILE_SAMPLE = 2048
RUN_LENGTH = 32  # images per contiguous run when no slide ids are known


def meta_path(x_path: Path) -> Path:
    """``..._split_train_x.h5`` -> ``..._split_train_meta.csv`` (PCAM's naming)."""
    return x_path.with_name(x_path.name.removesuffix("_x.h5") + "_meta.csv")


def read_slide_column(path: Path, rows: int) -> np.ndarray | None:
    """The ``wsi`` column of a PCAM meta CSV as integer slide ids (one per image), or None when
    the file is absent, has no such column or does not list ``rows`` images (said in a log line)."""
    if not path.is_file():
        return None
    try:
        with open(path, newline="") as f:
            reader = csv.reader(f)
            header = next(reader, [])
            if "wsi" not in header:
                log(f"{path.name} has no 'wsi' column: slides unknown for the drift profile")
                return None
            column = header.index("wsi")
            names = [row[column] for row in reader if len(row) > column]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        log(f"cannot read {path} ({err}): slides unknown for the drift profile")
        return None
    if len(names) != rows:
        log(f"{path.name} lists {len(names)} images, the split holds {rows}: slides unknown for the drift profile")
        return None
    return np.unique(np.asarray(names), return_inverse=True)[1].astype(np.int64)


def split_slide_ids(split) -> np.ndarray | None:
    """Slide id of each image of a PCAM split (or a filtered view of one), else None."""
    base = getattr(split, "base", split)
    x_path = getattr(base, "x_path", None)
    if x_path is None:
        return None
    ids = read_slide_column(meta_path(Path(x_path)), len(base))
    if ids is not None and base is not split:
        ids = ids[split.kept]
    return ids


def _contiguous_runs(length: int, sample: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of evenly spaced runs of RUN_LENGTH consecutive images, and each one's run number."""
    run = max(1, min(RUN_LENGTH, length // 2))
    count = max(1, min(sample // run, length // run))
    starts = np.linspace(0, length - run, count).astype(np.int64)
    indices = (starts[:, None] + np.arange(run)[None, :]).reshape(-1)
    return indices, np.repeat(np.arange(count), run)


def group_spread(values: np.ndarray, groups: np.ndarray) -> dict:
    """Mean over groups of the group means, the variance between group means beyond what their
    own within-group noise explains, and the pooled within-group variance."""
    labels, inverse, sizes = np.unique(groups, return_inverse=True, return_counts=True)
    means = np.bincount(inverse, values) / sizes
    squares = np.bincount(inverse, np.square(values - means[inverse]))
    dof = int(np.sum(sizes - 1))
    within = float(squares.sum() / dof) if dof > 0 else float(values.var())
    observed = float(means.var(ddof=1)) if len(labels) > 1 else 0.0
    return {
        "center": float(means.mean()),
        "between_var": max(observed - within * float(np.mean(1.0 / sizes)), 0.0),
        "within_var": within,
    }


def intensity_profile(split, sample: int = PROFILE_SAMPLE) -> dict:
    """The profile over up to ``sample`` training images: evenly spaced ones grouped by slide when
    the split's slides are known, else contiguous runs; deterministic, one read of ``sample`` images."""
    slides = split_slide_ids(split)
    if slides is not None:
        indices = np.unique(np.linspace(0, len(split) - 1, min(sample, len(split))).astype(np.int64))
        groups, spread_from = slides[indices], "slides"
    else:
        indices, groups = _contiguous_runs(len(split), sample)
        spread_from = "runs"
    images = split.read(indices)
    features = image_features(images)
    return {
        "images": len(indices),
        "image_shape": list(images.shape[1:]),
        "spread_from": spread_from,
        "groups": len(np.unique(groups)),
        "features": {
            name: {
                "mean": float(values.mean()),
                "std": float(values.std()),
                "quantiles": dict(
                    zip(map(str, PROFILE_QUANTILES), np.quantile(values, PROFILE_QUANTILES).tolist(), strict=True)
                ),
                **group_spread(values, groups),
            }
            for name, values in features.items()
        },
    }
