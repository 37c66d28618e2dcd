"""``python -m jaxpcam.audit DATA_DIR [--out DIR]``: audit a PCAM folder (see jaxpcam.data.audit).
``python -m jaxpcam.audit --convert SRC DST [--compression gzip|lzf|none]``: rewrite float32 course
copies as uint8, chunked per image, optionally compressed, and compare size and read speed.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import h5py
import numpy as np

from jaxpcam.cli import exit_code
from jaxpcam.core.errors import UserError
from jaxpcam.data.audit import audit
from jaxpcam.data.pcam import SPLITS, as_uint8, open_split, split_paths

_MONTAGE_TILES = 64


def _mb(n) -> str:
    return "-" if n is None else f"{n / 1e6:,.1f} MB"


def print_report(report: dict, seconds: float, out_dir: Path) -> None:
    print(f"\nAudit of {report['data_dir']}\n\nFiles:")
    heads = ("on disk", "as uint8", "gzip uint8", "non-finite")
    print(f"  {'file':44} {'dtype':8} {'shape':22} {'chunks':16} {'filter':6} " + " ".join(f"{h:>12}" for h in heads))
    for f in report["files"]:
        print(
            f"  {f['file']:44} {f['dtype']:8} {tuple(f['shape'])!s:22} {f['chunks']!s:16} "
            f"{f['compression']!s:6} {_mb(f['bytes_on_disk']):>12} {_mb(f.get('bytes_as_uint8')):>12} "
            f"{_mb(f.get('bytes_as_gzip_uint8_estimate')):>12} {f.get('nonfinite_pixels', '-')!s:>12}"
        )
    print("  (gzip uint8 is an estimate from compressing an evenly spaced sample at level 4;")
    print("   non-finite: NaN/inf pixel values, which training refuses; their images count as out_of_range)")
    total = sum(s["images"] for s in report["splits"].values())
    print(f"\nSplits ({total:,} images in {seconds:.0f} s, {total / max(seconds, 1e-9):,.0f} images/s):")
    kinds = ("empty", "out_of_range", "outlier", "trigger", "duplicate", "also_in_other_splits")
    print(f"  {'split':6} {'images':>8} {'positive':>9} " + " ".join(f"{k:>20}" for k in kinds))
    for name, s in report["splits"].items():
        counts = " ".join(f"{len(s[k]):>20,}" for k in kinds)
        positive = "-" if s["positive_fraction"] is None else f"{s['positive_fraction']:.1%}"  # an empty split
        print(f"  {name:6} {s['images']:>8,} {positive:>9} {counts}")
    for name, s in report["splits"].items():
        for index, (row, col) in list(s["trigger_locations"].items())[:10]:
            print(f"  trigger pattern: {name} image {index} around row {row}, col {col}")
    print(f"\nWrote {out_dir / 'audit.json'}, manifest_<split>.json and {montage_note(report['montage'])}")
    print("Train on the clean manifest with --config.data.filter=True")


def montage_note(tiles: list[dict]) -> str:
    if not tiles:
        return "no flagged.png (nothing flagged)"
    return f"flagged.png ({len(tiles)} tiles, at most {_MONTAGE_TILES}; audit.json's montage says which is which)"


def write_montage(data_dir: Path, report: dict, path: Path) -> list[dict]:
    """A PNG grid of up to 64 flagged tiles; returns which tile is which. With nothing flagged
    there is no PNG (a blank one reads as a broken audit), and one from an earlier audit goes."""
    from PIL import Image

    tiles = []
    for name, s in report["splits"].items():
        for kind in ("trigger", "empty", "outlier", "out_of_range", "duplicate", "also_in_other_splits"):
            tiles += [{"split": name, "index": i, "kind": kind} for i in s[kind]]
    tiles = tiles[:_MONTAGE_TILES]
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
    start = time.monotonic()
    report = audit(data_dir, out_dir)
    seconds = time.monotonic() - start
    report["montage"] = write_montage(data_dir, report, out_dir / "flagged.png")
    report["seconds"] = seconds
    (out_dir / "audit.json").write_text(json.dumps(report, indent=1))
    print_report(report, seconds, out_dir)
    return report


def _read_speed(path: Path, n: int = 2000) -> float:
    with h5py.File(path, "r") as f:
        x = f["x"]
        indices = np.random.default_rng(0).integers(0, x.shape[0], min(n, x.shape[0]))
        start = time.perf_counter()
        for i in indices:
            x[int(i)]
        return len(indices) / (time.perf_counter() - start)


def convert(src: Path, dst: Path, compression: str | None, level: int | None) -> None:
    """Rewrites every split in ``src`` as uint8 (clipped), chunked one image per chunk."""
    dst.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        x_src, y_src = split_paths(src, split)
        if not x_src.is_file():
            continue
        x_dst, y_dst = split_paths(dst, split)
        with h5py.File(x_src, "r") as fin, h5py.File(x_dst, "w") as fout:
            x = fin["x"]
            out = fout.create_dataset(
                "x", x.shape, np.uint8, chunks=(1, *x.shape[1:]), compression=compression, compression_opts=level
            )
            for lo in range(0, x.shape[0], 1024):
                out[lo : lo + 1024] = as_uint8(x[lo : lo + 1024])
        with h5py.File(y_src, "r") as fin, h5py.File(y_dst, "w") as fout:
            fout.create_dataset("y", data=np.asarray(fin["y"][...]).astype(np.uint8))
        before, after = x_src.stat().st_size, x_dst.stat().st_size
        print(
            f"{split}: {_mb(before)} -> {_mb(after)} ({after / before:.1%}); random single-image reads "
            f"{_read_speed(x_src):,.0f}/s before, {_read_speed(x_dst):,.0f}/s after"
        )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jaxpcam.audit", description=__doc__)
    parser.add_argument("data_dir", nargs="?", type=Path, help="folder with camelyonpatch_level_2_split_*.h5")
    parser.add_argument("--out", type=Path, help="where to write the report (default DATA_DIR/jaxpcam-audit)")
    parser.add_argument("--convert", nargs=2, type=Path, metavar=("SRC", "DST"), help="rewrite SRC as uint8 into DST")
    parser.add_argument("--compression", choices=("gzip", "lzf", "none"), default="none")
    parser.add_argument("--level", type=int, default=4, help="gzip level (1-9)")
    args = parser.parse_args(argv)
    if not (args.convert or args.data_dir):
        parser.error("give DATA_DIR to audit, or --convert SRC DST")

    def command() -> None:
        if args.convert:
            compression = None if args.compression == "none" else args.compression
            convert(*args.convert, compression, args.level if compression == "gzip" else None)
        else:
            if not args.data_dir.is_dir():
                raise UserError(f"{args.data_dir} is not a folder")
            run_audit(args.data_dir, args.out or args.data_dir / "jaxpcam-audit")

    return exit_code(command)


if __name__ == "__main__":
    sys.exit(main())
