"""Metrics on slices of a split: dark and bright patches by mean intensity, or any user function.

A slice is a boolean mask over the split. A metric a slice cannot define (recall without
positives, AUC with one class) is NaN and shown as "undefined", never as 0.0.
"""

import dataclasses
import importlib
import importlib.util
import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
from sklearn import metrics as skm

from jaxpcam.config.files import load_python_file
from jaxpcam.core import metrics as metrics_lib
from jaxpcam.core.errors import UserError


def mean_intensity(images: np.ndarray) -> np.ndarray:
    """Per-image mean over pixels and channels, 0..255: the slicing feature for dark/bright."""
    return images.reshape(len(images), -1).mean(axis=1, dtype=np.float64)


@dataclasses.dataclass(frozen=True)
class IntensitySlicing:
    """Dark: the bottom ``dark_quantile`` of the split, or below ``dark_below`` when given.
    Bright: mean intensity above ``bright_above``."""

    dark_quantile: float = 0.1
    dark_below: float | None = None
    bright_above: float = 220.0

    def cuts(self, feature: np.ndarray) -> dict[str, float]:
        dark = self.dark_below if self.dark_below is not None else float(np.quantile(feature, self.dark_quantile))
        return {"dark": dark, "bright": self.bright_above}

    def masks(self, feature: np.ndarray) -> dict[str, np.ndarray]:
        cuts = self.cuts(feature)
        dark_name = f"dark (<= {cuts['dark']:.1f})" if self.dark_below is None else f"dark (< {cuts['dark']:.1f})"
        dark = feature <= cuts["dark"] if self.dark_below is None else feature < cuts["dark"]
        return {dark_name: dark, f"bright (> {cuts['bright']:.1f})": feature > cuts["bright"]}


def load_slice_function(spec: str) -> Callable[[np.ndarray], np.ndarray]:
    """``package.module:function`` or ``path/to/file.py:function``; the function maps a uint8
    batch (B, H, W, C) to a (B,) boolean array: True for images in the slice."""
    target, _, name = spec.rpartition(":")
    if not target or not name:
        raise UserError(f"slice function {spec!r}: expected module:function or file.py:function")
    if target.endswith(".py"):
        module = load_python_file(Path(target).expanduser(), what="--slice")
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as err:
            raise UserError(f"cannot load slice function {spec!r}: {err}") from None
    if not callable(getattr(module, name, None)):
        raise UserError(f"cannot load slice function {spec!r}: {target} defines no {name}()")
    return getattr(module, name)


def apply_slice_function(function: Callable, spec: str, images: np.ndarray) -> np.ndarray:
    try:
        mask = np.asarray(function(images))
    except Exception as err:
        raise UserError(f"slice function {spec!r} failed: {type(err).__name__}: {err}") from None
    if mask.shape != (len(images),):
        raise UserError(f"slice function {spec!r} returned shape {mask.shape}; expected ({len(images)},) booleans")
    return mask.astype(bool)


def _slice_row(labels: np.ndarray, probs: np.ndarray, threshold: float) -> dict:
    preds = probs >= threshold
    count, positives = len(labels), int(labels.sum())
    both = 0 < positives < count
    return {
        "count": count,
        "positives": positives,
        "accuracy": float(np.mean(preds == labels)) if count else math.nan,
        "recall": float(preds[labels == 1].mean()) if positives else math.nan,
        "f2": float(skm.fbeta_score(labels, preds, beta=2.0, zero_division=np.nan)) if count else math.nan,
        "roc_auc": float(skm.roc_auc_score(labels, probs)) if both else math.nan,
    }


GAP_METRICS = ("accuracy", "recall", "f2", "roc_auc")


def slice_table(labels: np.ndarray, probs: np.ndarray, threshold: float, masks: dict[str, np.ndarray]) -> list[dict]:
    """One row for the whole split ('all') and one per slice, with each metric's gap to 'all'."""
    overall = {"slice": "all", **_slice_row(labels, probs, threshold)}
    rows = [overall]
    for name, mask in masks.items():
        row = {"slice": name, **_slice_row(labels[mask], probs[mask], threshold)}
        for key in GAP_METRICS:
            row[f"{key}_gap"] = row[key] - overall[key]  # NaN when either side is undefined
        rows.append(row)
    return rows


def write_slices_csv(path: Path, rows: list[dict]) -> None:
    keys = list(dict.fromkeys(k for row in rows for k in row))
    lines = [",".join(keys)]
    for row in rows:
        lines.append(",".join(_csv_cell(row.get(k)) for k in keys))
    path.write_text("\n".join(lines) + "\n")


def _csv_cell(value) -> str:
    if isinstance(value, str):
        return json.dumps(value) if "," in value else value
    return metrics_lib.show(value, 6) if value is not None else ""
