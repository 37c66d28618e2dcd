"""Does new input look like the training data? A check of intensity statistics against the
profile stored in the checkpoint at training time (scanner or stain shift degrades a model
silently; this makes it loud, but only when the input is unusual for a new slide).

Users predict on the tiles of one new slide, and slides differ in stain and brightness, so the
yardstick is the spread of *slide* means in the training data, not of single images. For each
feature (channel means, brightness, contrast) the mean of the ``n`` input images is compared with
the training slides' centre in units of the spread a new slide's ``n``-image mean shows,
``sqrt(between-slide var + within-slide var / n)`` (:mod:`jaxpcam.data.profile`): ``effect``.
Its two-sided normal tail probability, times the number of features (Bonferroni), is how often a
batch from a new slide like the training slides looks at least this unusual; the check warns
below ``FALSE_ALARM`` (1%), so it is built for at most 1 false alarm in 100 such batches.

Profiles of older checkpoints lack the spread; they get the old check (shift of the mean in
per-image training std above 1, or over 15% of images outside the training 1-99% range), which
warns on most single slides, and the message says so.
"""

import dataclasses
import math

import numpy as np

FALSE_ALARM = 0.01
MIN_SLIDES = 10  # fewer: the between-slide spread is unknown; the message claims no probability
LEGACY_MAX_SHIFT = 1.0
LEGACY_MAX_OUTSIDE = 0.15


@dataclasses.dataclass(frozen=True)
class DriftCheck:
    features: dict[str, dict[str, float]]  # name -> {'input_mean', 'train_mean', 'effect', ...}
    drifted: bool
    images: int
    method: str  # 'slides', 'runs' (contiguous training images) or 'legacy'
    p_value: float | None = None  # Bonferroni-adjusted; None for the legacy check
    groups: int = 0

    def worst(self) -> tuple[str, dict]:
        return max(self.features.items(), key=lambda kv: abs(kv[1]["effect"]))

    def message(self) -> str:
        """One line: the verdict and the numbers behind it (for predict to print)."""
        name, worst = self.worst()
        head = (
            "input drift: the input's intensity statistics are unusual for the training data"
            if self.drifted
            else "no input drift: the input's intensity statistics are within the training data's normal range"
        )
        means = f"{name}: mean {_show(worst['input_mean'])} vs {_show(worst['train_mean'])} in training"
        if self.method == "legacy":
            outside = max(f["outside"] for f in self.features.values())
            return (
                f"{head} ({self.images} images; largest shift {means}, {worst['effect']:+.2f} training std per image; "
                f"{outside:.0%} of images outside the training 1-99% range; old check: this checkpoint's profile "
                "has no per-slide spread, and this check also warns on many ordinary slides; retrain to get the "
                "calibrated one)"
            )
        unit = "training slides" if self.method == "slides" else "runs of consecutive training images"
        effect = (
            f"{head} ({self.images} images; largest effect {means}, {worst['effect']:+.2f} sd of a new slide's "
            f"{self.images}-image mean given the spread of {self.groups} {unit}"
        )
        if self.groups < MIN_SLIDES:  # the spread itself is unknown: no probability is claimed
            return (
                f"{effect}; only {self.groups} {unit}: too few to know how much slides differ, so an ordinary "
                "new slide can look like this; no false-alarm rate can be given)"
            )
        return (
            f"{effect}; p = {self.p_value:.2g} over {len(self.features)} features{_rarity(self.p_value)}; "
            f"warns below p = {FALSE_ALARM})"
        )


def _show(value: float) -> str:
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.3f}"


def _rarity(p_value: float) -> str:
    """How often batches of slides like the training ones look at least this unusual, in words."""
    if p_value >= 0.5:
        return ""
    if p_value < 1e-6:
        return ", fewer than 1 in a million batches of slides like the training ones"
    return f", about 1 in {float(f'{1 / p_value:.2g}'):,.0f} batches of slides like the training ones"


def _tail(effect: float) -> float:
    """Two-sided standard normal tail probability of ``|effect|``."""
    return math.erfc(abs(effect) / math.sqrt(2.0))


def _legacy(profile: dict, features: dict[str, np.ndarray], images: int) -> DriftCheck:
    result = {}
    for name, reference in profile["features"].items():
        if name in features:
            values = features[name]
            low, high = reference["quantiles"]["0.01"], reference["quantiles"]["0.99"]
            result[name] = {
                "effect": float((values.mean() - reference["mean"]) / max(reference["std"], 1e-6)),
                "outside": float(np.mean((values < low) | (values > high))),
                "input_mean": float(values.mean()),
                "train_mean": float(reference["mean"]),
            }
    drifted = any(abs(f["effect"]) > LEGACY_MAX_SHIFT or f["outside"] > LEGACY_MAX_OUTSIDE for f in result.values())
    return DriftCheck(result, drifted, images, "legacy")


def check_drift(profile: dict, features: dict[str, np.ndarray], false_alarm: float = FALSE_ALARM) -> DriftCheck:
    """``features`` as from :func:`jaxpcam.data.stats.image_features` over the input images."""
    images = len(next(iter(features.values())))
    if "spread_from" not in profile:
        return _legacy(profile, features, images)
    result = {}
    for name, reference in profile["features"].items():
        if name in features:
            mean = float(features[name].mean())
            scale = math.sqrt(reference["between_var"] + reference["within_var"] / images)
            effect = (mean - reference["center"]) / max(scale, 1e-6)
            result[name] = {"effect": effect, "p": _tail(effect), "input_mean": mean, "train_mean": reference["center"]}
    p_value = min(1.0, len(result) * min(f["p"] for f in result.values()))
    return DriftCheck(result, p_value < false_alarm, images, profile["spread_from"], p_value, profile["groups"])
