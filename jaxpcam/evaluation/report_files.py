"""The report command's work: the runs a report covers, and its Markdown and CSV files, each
written whole or not at all; a ``--output`` the user named replaces nothing unasked."""

import os
from pathlib import Path

from jaxpcam.core.errors import UserError
from jaxpcam.core.files import write_output_text
from jaxpcam.evaluation.report import Report, build_report, find_runs, to_csv, to_markdown
from jaxpcam.run import outputs


def _outputs(prefix: Path) -> tuple[Path, Path]:
    return Path(f"{prefix}.md"), Path(f"{prefix}.csv")


def check_output(prefix: Path, overwrite: bool) -> None:
    """An --output the user named replaces nothing unasked (the default report.* replaces only
    what an earlier report wrote there, unchanged since: run/outputs.py)."""
    existing = [str(p) for p in _outputs(prefix) if p.exists()]
    if existing and not overwrite:
        raise UserError(
            f"--output {prefix}: {' and '.join(existing)} exist(s): pass --overwrite to replace, or name another prefix"
        )


def metric_names(text: str | None) -> tuple[str, ...] | None:
    """--metrics a,b as names; None (the task's defaults) when not given."""
    return tuple(m.strip() for m in text.split(",") if m.strip()) if text else None


def write_report(
    patterns: list[str], metrics: tuple[str, ...] | None, at: str, champion: str | None,
    output: Path | None, overwrite: bool,
) -> tuple[Report, Path]:  # fmt: skip
    """Builds the report of the runs ``patterns`` name and writes PREFIX.md and .csv: ``output``,
    or ``report`` in the runs' common parent; returns the report and the prefix written."""
    if output:
        check_output(output, overwrite)  # before any work: a refusal comes at once
    runs = find_runs(patterns)
    report = build_report(runs, metrics, at, champion)
    common = Path(os.path.commonpath([str(r) for r in runs]))
    prefix = output or ((common if len(runs) > 1 else common.parent) / "report")
    prefix.parent.mkdir(parents=True, exist_ok=True)
    md, csv = _outputs(prefix)
    texts = {md: to_markdown(report, at) + "\n", csv: to_csv(report)}
    heads = {md: "| run |", csv: "run,"}  # what reports from before manifests begin with
    if not output:  # the default report.*: replaced only while it is the report's own, unchanged
        if not overwrite:
            for path in texts:
                outputs.check_owned(path, heads[path])  # before writing either: both or neither
        for path, text in texts.items():
            outputs.write_owned_text(path, text, "jaxpcam.report", overwrite, heads[path])
        return report, prefix
    try:  # each file whole or not at all; a user's file only with --overwrite
        for path, text in texts.items():
            write_output_text(path, text, replace=overwrite)
    except FileExistsError as err:  # appeared while the report was made
        raise UserError(f"--output {prefix}: {err.filename} exists now: pass --overwrite to replace it") from None
    return report, prefix
