"""The audit command's work around ``jaxpcam.data.audit.audit``: the montage of flagged tiles,
audit.json with the time taken, and the report as text."""

import json
import time
from pathlib import Path

import numpy as np
from PIL import Image

from jaxpcam.core.errors import UserError
from jaxpcam.data.audit import audit
from jaxpcam.data.pcam import open_split

MONTAGE_TILES = 64
_FLAGGED = ("trigger", "empty", "outlier", "out_of_range", "duplicate", "also_in_other_splits")


def megabytes(n) -> str:
    return "-" if n is None else f"{n / 1e6:,.1f} MB"


def montage_note(tiles: list[dict]) -> str:
    if not tiles:
        return "no flagged.png (nothing flagged)"
    return f"flagged.png ({len(tiles)} tiles, at most {MONTAGE_TILES}; audit.json's montage says which is which)"


def write_montage(data_dir: Path, report: dict, path: Path) -> list[dict]:
    """A PNG grid of up to 64 flagged tiles; returns which tile is which. With nothing flagged
    there is no PNG (a blank one reads as a broken audit), and one from an earlier audit goes."""
    tiles = []
    for name, s in report["splits"].items():
        for kind in _FLAGGED:
            tiles += [{"split": name, "index": i, "kind": kind} for i in s[kind]]
    tiles = tiles[:MONTAGE_TILES]
    if not tiles:
        path.unlink(missing_ok=True)
        return tiles
    cols = 8
    grid = np.full((-(-len(tiles) // cols) * 98, cols * 98, 3), 255, np.uint8)
    splits = {}
    for k, tile in enumerate(tiles):
        split = splits.setdefault(tile["split"], open_split(data_dir, tile["split"]))
        r, c = divmod(k, cols)
        grid[r * 98 : r * 98 + 96, c * 98 : c * 98 + 96] = split.read(np.array([tile["index"]]))[0]
    Image.fromarray(grid).save(path)
    return tiles


def run_audit(data_dir: Path, out_dir: Path) -> dict:
    """Audits ``data_dir`` into ``out_dir`` (audit.json, the manifests, flagged.png); returns the
    report, with the montage's tiles and the seconds the scan took."""
    if not data_dir.is_dir():
        raise UserError(f"{data_dir} is not a folder")
    start = time.monotonic()
    report = audit(data_dir, out_dir)
    seconds = time.monotonic() - start
    report["montage"] = write_montage(data_dir, report, out_dir / "flagged.png")
    report["seconds"] = seconds
    (out_dir / "audit.json").write_text(json.dumps(report, indent=1))
    return report


def _file_lines(files: list[dict]) -> list[str]:
    heads = ("on disk", "as uint8", "gzip uint8", "non-finite")
    lines = [
        f"  {'file':44} {'dtype':8} {'shape':22} {'chunks':16} {'filter':6} " + " ".join(f"{h:>12}" for h in heads)
    ]
    for f in files:
        lines.append(
            f"  {f['file']:44} {f['dtype']:8} {tuple(f['shape'])!s:22} {f['chunks']!s:16} "
            f"{f['compression']!s:6} {megabytes(f['bytes_on_disk']):>12} {megabytes(f.get('bytes_as_uint8')):>12} "
            f"{megabytes(f.get('bytes_as_gzip_uint8_estimate')):>12} {f.get('nonfinite_pixels', '-')!s:>12}"
        )
    lines.append("  (gzip uint8 is an estimate from compressing an evenly spaced sample at level 4;")
    lines.append("   non-finite: NaN/inf pixel values, which training refuses; their images count as out_of_range)")
    return lines


def _split_lines(splits: dict, seconds: float) -> list[str]:
    total = sum(s["images"] for s in splits.values())
    lines = [f"\nSplits ({total:,} images in {seconds:.0f} s, {total / max(seconds, 1e-9):,.0f} images/s):"]
    kinds = ("empty", "out_of_range", "outlier", "trigger", "duplicate", "also_in_other_splits")
    lines.append(f"  {'split':6} {'images':>8} {'positive':>9} " + " ".join(f"{k:>20}" for k in kinds))
    for name, s in splits.items():
        counts = " ".join(f"{len(s[k]):>20,}" for k in kinds)
        positive = "-" if s["positive_fraction"] is None else f"{s['positive_fraction']:.1%}"  # an empty split
        lines.append(f"  {name:6} {s['images']:>8,} {positive:>9} {counts}")
    for name, s in splits.items():
        for index, (row, col) in list(s["trigger_locations"].items())[:10]:
            lines.append(f"  trigger pattern: {name} image {index} around row {row}, col {col}")
    return lines


def audit_text(report: dict, out_dir: Path) -> str:
    """The report as the audit command prints it."""
    head = [f"\nAudit of {report['data_dir']}\n\nFiles:", *_file_lines(report["files"])]
    wrote = f"\nWrote {out_dir / 'audit.json'}, manifest_<split>.json and {montage_note(report['montage'])}"
    tail = [wrote, "Train on the clean manifest with --config.data.filter=True"]
    return "\n".join([*head, *_split_lines(report["splits"], report["seconds"]), *tail])
