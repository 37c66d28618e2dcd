"""False-alarm and detection rates of predict's drift check on held-out slides of the built-in sample.

    python benchmarks/drift_rates.py                      # the sample's valid/test + 8 more seeds
    python benchmarks/drift_rates.py --seeds 0 --json rates.json

The profile is computed from the sample's train split exactly as training does. Held-out slides:
the sample's own valid and test splits (seed 0) and the valid/test splits written with further
``--seeds`` (new slides drawn by the same generator, 12 per seed). Each split is cut into
consecutive batches of ``--size`` tiles (mostly one slide each, as predict sees one slide's
tiles): the false-alarm rate is the share of them that warn. Detection: batches of
``--shift_size`` consecutive tiles with a brightness or stain change applied.

``--sample_version 2`` profiles sample version 2's train split; its valid splits (the training
lab's new slides) give the false alarms, and its test splits, stained by another lab, a
detection rate for a real lab change (``detection_other_lab``).
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from jaxpcam.data.pcam import open_split, read_all
from jaxpcam.data.profile import intensity_profile
from jaxpcam.data.sample import ensure_sample, write_sample
from jaxpcam.data.stats import image_features
from jaxpcam.evaluation.drift import check_drift


def _optical_density_scale(images: np.ndarray, scale) -> np.ndarray:
    """A stain change through Beer-Lambert optics: each channel's optical density times ``scale``."""
    light = np.clip(images.astype(np.float64), 1, 255) / 255.0
    return np.clip(np.rint(255.0 * light ** np.asarray(scale, np.float64)), 0, 255).astype(np.uint8)


SHIFTS = {
    "brightness x0.5": lambda x: np.clip(np.rint(x * 0.5), 0, 255).astype(np.uint8),
    "brightness x0.6": lambda x: np.clip(np.rint(x * 0.6), 0, 255).astype(np.uint8),
    "brightness x0.75": lambda x: np.clip(np.rint(x * 0.75), 0, 255).astype(np.uint8),
    "brightness -40": lambda x: np.clip(x.astype(np.int16) - 40, 0, 255).astype(np.uint8),
    "stain OD x1.5": lambda x: _optical_density_scale(x, 1.5),
    "stain OD x2": lambda x: _optical_density_scale(x, 2.0),
    "stain OD x2.5": lambda x: _optical_density_scale(x, 2.5),
    "stain hue OD (x0.5, x1, x2)": lambda x: _optical_density_scale(x, (0.5, 1.0, 2.0)),
    "stain hue OD (x0.3, x1, x3)": lambda x: _optical_density_scale(x, (0.3, 1.0, 3.0)),
    "stain hue OD (x2, x1, x0.5)": lambda x: _optical_density_scale(x, (2.0, 1.0, 0.5)),
}


def batches(images: np.ndarray, size: int):
    return [images[s : s + size] for s in range(0, len(images) - size + 1, size)]


def warn_rate(profile: dict, chunks) -> float:
    return float(np.mean([check_drift(profile, image_features(c)).drifted for c in chunks]))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", default="0,1,2,3,4,5,6,7,8", help="sample seeds of held-out slides (0: the sample's own)")
    p.add_argument("--size", type=int, default=20, help="tiles per held-out batch")
    p.add_argument("--shift_size", type=int, default=200, help="tiles per shifted batch")
    p.add_argument("--sample_version", type=int, default=1, choices=(1, 2))
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    sample = ensure_sample(args.sample_version)
    profile = intensity_profile(open_split(sample, "train"))
    other_lab = args.sample_version == 2  # its test splits come from another lab
    held_out, new_lab = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in (int(s) for s in args.seeds.split(",")):
            folder = sample if seed == 0 else Path(tmp) / f"seed{seed}"
            if seed != 0:
                write_sample(folder, {"valid": 1024, "test": 1024}, seed=seed, version=args.sample_version)
            held_out.append(read_all(open_split(folder, "valid")))
            (new_lab if other_lab else held_out).append(read_all(open_split(folder, "test")))
    small = [c for images in held_out for c in batches(images, args.size)]
    large = [c for images in held_out for c in batches(images, args.shift_size)]
    lab = {}
    if other_lab:
        lab = {
            f"detection_other_lab_{size}": warn_rate(profile, [c for x in new_lab for c in batches(x, size)])
            for size in (args.size, args.shift_size)
        }
    result = {
        "sample_version": args.sample_version,
        "profile": {"spread_from": profile["spread_from"], "groups": profile["groups"]},
        "held_out_slides": 6 * len(held_out),
        **({"other_lab_slides": 6 * len(new_lab)} if other_lab else {}),
        f"false_alarm_{args.size}": warn_rate(profile, small),
        f"batches_{args.size}": len(small),
        f"false_alarm_{args.shift_size}": warn_rate(profile, large),
        f"batches_{args.shift_size}": len(large),
        "detection": {name: warn_rate(profile, [shift(c) for c in large]) for name, shift in SHIFTS.items()},
        **lab,
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
