"""``python -m jaxpcam.report RUN_DIRS_OR_GLOBS... [--metrics a,b] [--champion METRIC] [--output PREFIX]``

One table across runs (e.g. seeds 42/43/44 of one config, or a sweep): each run's metrics and
evaluation results (test_roc_auc, and test_roc_auc_tta for an evaluation with --tta), mean
± std (n) per group of runs whose configs differ only in the seed, and the champion; printed to
fit 100 columns, and written in full as Markdown and CSV: ``report.md``/``.csv`` beside the runs
(replaced by each report), or ``--output PREFIX``, whose existing files are replaced only with
``--overwrite``.
"""

import argparse
import os
import sys
from pathlib import Path

from jaxpcam.cli import run_command
from jaxpcam.core.errors import UserError
from jaxpcam.core.files import write_output_text
from jaxpcam.evaluation.report import build_report, find_runs, to_csv, to_markdown
from jaxpcam.evaluation.report_text import to_terminal


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m jaxpcam.report", description=__doc__.split("\n\n")[1])
    p.add_argument("runs", nargs="+", help="run directories, globs (quoted), or folders holding runs")
    p.add_argument("--metrics", default=None,
                   help="comma-separated metrics.jsonl keys (default by task), or evaluation columns such as "
                   "test_roc_auc,test_roc_auc_tta, shown first")  # fmt: skip
    p.add_argument("--at", choices=("best", "final"), default="best", help="which epoch's val_* values")
    p.add_argument("--champion", default=None, help="metric that picks the champion (default: the first one a run has)")
    p.add_argument("--output", type=Path, default=None,
                   help="path prefix for .md and .csv (default: <common parent of the runs>/report)")  # fmt: skip
    p.add_argument("--overwrite", action="store_true", help="replace existing --output PREFIX.md/.csv files")
    return p.parse_args(argv)


def _outputs(prefix: Path) -> tuple[Path, Path]:
    return Path(f"{prefix}.md"), Path(f"{prefix}.csv")


def check_output(prefix: Path, overwrite: bool) -> None:
    """An --output the user named replaces nothing unasked (the default report.* is the report's own)."""
    existing = [str(p) for p in _outputs(prefix) if p.exists()]
    if existing and not overwrite:
        raise UserError(f"--output {prefix}: {' and '.join(existing)} exist(s): pass --overwrite to replace, or "
                        "name another prefix")  # fmt: skip


def main(argv=None) -> int:
    args = parse_args(argv)

    def command():
        if args.output:
            check_output(args.output, args.overwrite)  # before any work: a refusal comes at once
        runs = find_runs(args.runs)
        metrics = tuple(m.strip() for m in args.metrics.split(",") if m.strip()) if args.metrics else None
        report = build_report(runs, metrics, args.at, args.champion)
        markdown = to_markdown(report, args.at)
        common = Path(os.path.commonpath([str(r) for r in runs]))
        prefix = args.output or ((common if len(runs) > 1 else common.parent) / "report")
        prefix.parent.mkdir(parents=True, exist_ok=True)
        md, csv = _outputs(prefix)
        try:  # each file whole or not at all; a user's file only with --overwrite
            write_output_text(md, markdown + "\n", replace=not args.output or args.overwrite)
            write_output_text(csv, to_csv(report), replace=not args.output or args.overwrite)
        except FileExistsError as err:  # appeared while the report was made
            raise UserError(f"--output {prefix}: {err.filename} exists now: pass --overwrite to replace it") from None
        print(to_terminal(report, args.at, f"{prefix}.csv (and .md)"))

    return run_command(command)


if __name__ == "__main__":
    sys.exit(main())
