"""``python -m jaxpcam.report RUN_DIRS_OR_GLOBS... [--metrics a,b] [--champion METRIC] [--output PREFIX]``

One table across runs (e.g. seeds 42/43/44 of one config, or a sweep): each run's metrics and
evaluation results (test_roc_auc, and test_roc_auc_tta for an evaluation with --tta), mean
± std (n) per group of runs whose configs differ only in the seed, and the champion; printed to
fit 100 columns, and written in full as Markdown and CSV: ``report.md``/``.csv`` beside the runs
(replaced by each report), or ``--output PREFIX``, whose existing files are replaced only with
``--overwrite``.
"""

import sys
from pathlib import Path

from absl import flags

from jaxpcam import cli

FLAGS = cli.command_flags()
_METRICS = flags.DEFINE_string(
    "metrics",
    None,
    "Comma-separated metrics.jsonl keys (default by task), or evaluation "
    "columns such as test_roc_auc,test_roc_auc_tta, shown first.",
    flag_values=FLAGS,
)
_AT = flags.DEFINE_enum("at", "best", ["best", "final"], "Which epoch's val_* values.", flag_values=FLAGS)
_CHAMPION = flags.DEFINE_string(
    "champion", None, "The metric that picks the champion (default: the first one a run has).", flag_values=FLAGS
)
_OUTPUT = flags.DEFINE_string(
    "output", None, "Path prefix for .md and .csv (default: <common parent of the runs>/report).", flag_values=FLAGS
)
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace existing --output PREFIX.md/.csv files.", flag_values=FLAGS)
_RUNS = cli.Arguments(missing="give the run directories, quoted globs, or folders holding runs", at_most=None)


def main(argv: list[str] | None = None) -> int:
    patterns = cli.parse(argv, FLAGS, __doc__, arguments=_RUNS)

    def report() -> None:
        # After parsing: the report's library imports jax, which takes seconds; --help answers at
        # once. Inside the command, so a signal while it imports is one line too.
        from jaxpcam.evaluation.report_files import metric_names, write_report
        from jaxpcam.evaluation.report_text import to_terminal

        output = Path(_OUTPUT.value) if _OUTPUT.value else None
        table, prefix = write_report(
            patterns, metric_names(_METRICS.value), _AT.value, _CHAMPION.value, output, _OVERWRITE.value
        )
        print(to_terminal(table, _AT.value, f"{prefix}.csv (and .md)"))

    return cli.run_command(report)


if __name__ == "__main__":
    sys.exit(main())
