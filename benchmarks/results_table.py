"""Merge throughput.py JSON files into one Markdown table, float32 and low precision side by side.

    python benchmarks/results_table.py out/*.json > table.md

One row per (model, source, mode, batch size); a column per dtype found, and the ratio of each
low-precision dtype to float32 where both were measured.
"""

import argparse
import json
import sys
from pathlib import Path


def load(paths: list[Path]) -> tuple[dict, list[dict]]:
    env, results = {}, []
    for path in paths:
        payload = json.loads(path.read_text())
        env = env or payload["environment"]
        results += payload["results"]
    return env, results


def markdown(env: dict, results: list[dict]) -> str:
    dtypes = sorted({r["dtype"] for r in results}, key=lambda d: (d != "float32", d))
    rows: dict[tuple, dict] = {}
    for r in results:
        rows.setdefault((r["model"], r["source"], r["mode"], r["batch_size"]), {})[r["dtype"]] = r
    low = [d for d in dtypes if d != "float32"]
    head = ["model", "source", "mode", "batch", *(f"{d} img/s" for d in dtypes), *(f"{d}/f32" for d in low)]
    head += ["compile s (f32)", "step ms (f32)"]
    lines = [
        f"device {env.get('device')} x{env.get('device_count')}, jax {env.get('jax')}",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for (model, source, mode, batch), by_dtype in sorted(rows.items()):
        f32 = by_dtype.get("float32")
        cells = [model, source, mode, str(batch)]
        cells += [f"{by_dtype[d]['images_per_second']:.0f}" if d in by_dtype else "-" for d in dtypes]
        for d in low:
            ok = f32 is not None and d in by_dtype
            cells.append(f"{by_dtype[d]['images_per_second'] / f32['images_per_second']:.2f}x" if ok else "-")
        cells += [f"{f32['compile_s']:.1f}", f"{f32['step_ms']:.2f}"] if f32 else ["-", "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/results_table.py", description=__doc__.split("\n\n")[0])
    p.add_argument("results", nargs="+", type=Path, help="JSON files written by throughput.py --json")
    paths = p.parse_args(argv).results
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        sys.exit(f"results_table.py: no such file: {', '.join(missing)}")
    sys.stdout.write(markdown(*load(paths)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
