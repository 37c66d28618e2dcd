"""What the tiles say about their whole-slide images, when the split has PCAM's ``_meta.csv``
(``wsi``: the slide of each tile; ``coord_y``/``coord_x``: where on it).

Per slide: its tiles, its tumour tiles by label, the largest, mean and top-k mean probability,
and the predicted slide label (tumour when its most probable tile reaches the tile threshold). A
slide is tumour when any of its tiles is labelled tumour; slide-level ROC-AUC is scikit-learn's
over the slides, for each aggregate. A meta file that does not fit the split is said in one line
and skipped: the patch-level results never depend on it.
"""

import csv
import dataclasses
from pathlib import Path

import numpy as np
from sklearn import metrics as skm

from jaxpcam.core.reporting import log
from jaxpcam.data.profile import meta_path

TOP_K = 5
AGGREGATES = ("max", "mean", f"top{TOP_K}_mean")
MISMATCH_SHARE = 0.10  # center_tumor_patch disagreeing with the labels on more rows: another split's meta
_NAN = float("nan")


@dataclasses.dataclass(frozen=True)
class SlideMeta:
    path: Path
    slides: np.ndarray  # (N,) the slide name of each tile, in file order
    coords: np.ndarray | None  # (N, 2) coord_y, coord_x; None when absent, all 0 or not numbers


def _bool_column(values: list[str]) -> np.ndarray | None:
    lowered = [v.strip().lower() for v in values]
    if not set(lowered) <= {"true", "false", "1", "0"}:
        return None
    return np.isin(lowered, ["true", "1"]).astype(np.int64)


def _coordinates(path: Path, header: list[str], rows: list[list[str]]) -> np.ndarray | None:
    if not {"coord_y", "coord_x"} <= set(header):
        return None
    columns = [header.index("coord_y"), header.index("coord_x")]
    for number, row in enumerate(rows):
        for c in columns:
            try:
                float(row[c])
            except ValueError:
                log(f"WARNING: {path}: {header[c]} in row {number + 1} is {row[c]!r}, not a number: no slide maps")
                return None
    coords = np.asarray([[float(row[c]) for c in columns] for row in rows])
    if not np.isfinite(coords).all():
        log(f"WARNING: {path}: coordinates that are not finite numbers: no slide maps")
        return None
    return coords if coords.any() else None  # all 0 (the built-in sample): no positions to draw


def _problem(header: list[str], rows: list[list[str]], labels: np.ndarray, x_name: str) -> str | None:
    if "wsi" not in header:
        return f"it has no 'wsi' column (it has {', '.join(header)})"
    if any(len(row) != len(header) for row in rows):
        return "a row has another number of cells than the header"
    if len(rows) != len(labels):
        return f"its rows do not match the split: it lists {len(rows)} tiles, {x_name} holds {len(labels)}"
    if "center_tumor_patch" in header:
        centre = _bool_column([row[header.index("center_tumor_patch")] for row in rows])
        differ = int(np.sum(centre != labels)) if centre is not None else 0
        if differ > MISMATCH_SHARE * len(labels):
            return f"its rows do not match the split: center_tumor_patch differs from the labels on {differ} rows"
    return None


def read_meta(split, labels: np.ndarray) -> SlideMeta | None:
    """The split's meta CSV, checked against its labels; None (said in one line) when there is
    none or it does not fit."""
    x_path = getattr(split, "x_path", None)
    if x_path is None:
        return None  # digits: no slides
    path = meta_path(Path(x_path))
    if not path.is_file():
        log(f"no slide-level results: no {path.name} beside {Path(x_path).name}")
        return None
    try:
        with open(path, newline="") as f:
            header, *rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error, ValueError) as err:
        log(f"WARNING: cannot read {path} ({err}): no slide-level results")
        return None
    header = [h.strip() for h in header]
    problem = _problem(header, rows, np.asarray(labels), Path(x_path).name)
    if problem:
        log(f"WARNING: {path}: {problem}: no slide-level results")
        return None
    slides = np.asarray([row[header.index("wsi")] for row in rows])
    return SlideMeta(path, slides, _coordinates(path, header, rows))


def slide_rows(meta: SlideMeta, labels: np.ndarray, probs: np.ndarray, threshold: float) -> list[dict]:
    """One row per slide, by name."""
    rows = []
    for name in np.unique(meta.slides):
        mask = meta.slides == name
        p = np.sort(probs[mask])[::-1]
        rows.append({
            "slide": str(name),
            "tiles": int(mask.sum()),
            "tumour_tiles": int(labels[mask].sum()),
            "label": int(labels[mask].any()),
            "max": float(p[0]),
            "mean": float(p.mean()),
            f"top{TOP_K}_mean": float(p[:TOP_K].mean()),
            "tiles_called_tumour": int(np.sum(p >= threshold)),
            "predicted": int(p[0] >= threshold),
        })  # fmt: skip
    return rows


def slide_section(meta: SlideMeta, labels: np.ndarray, probs: np.ndarray, threshold: float) -> dict:
    """metrics.json's ``slide_level``."""
    rows = slide_rows(meta, labels, probs, threshold)
    truth = np.asarray([r["label"] for r in rows])
    called = np.asarray([r["predicted"] for r in rows])
    both = len(np.unique(truth)) == 2
    section = {
        "meta": str(meta.path),
        "count": len(rows),
        "positives": int(truth.sum()),
        "roc_auc": {a: float(skm.roc_auc_score(truth, [r[a] for r in rows])) if both else _NAN for a in AGGREGATES},
        "accuracy": float(np.mean(called == truth)),
        "sensitivity": float(called[truth == 1].mean()) if truth.any() else _NAN,
        "specificity": float(1 - called[truth == 0].mean()) if (truth == 0).any() else _NAN,
        "slide_positive_when": "any tile is labelled tumour; predicted: its largest probability >= the threshold",
        "slides": rows,
    }
    if not both:
        section["note"] = f"slide-level ROC-AUC undefined: {'every' if truth.all() else 'no'} slide holds a tumour tile"
    return section


def write_slides_csv(path: Path, section: dict) -> None:
    keys = list(section["slides"][0])
    lines = [",".join(keys)]
    for row in section["slides"]:
        lines.append(",".join(str(row[k]) if isinstance(row[k], str | int) else repr(row[k]) for k in keys))
    path.write_text("\n".join(lines) + "\n")


def safe_name(slide: str) -> str:
    """A file name for a slide's map (its name with anything but letters, digits, . _ - as _)."""
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in slide) or "slide"
