"""The report as a terminal reads it: per group of runs, its runs and one mean ± std line, with
as many metric columns as fit the width (the rest are in report.csv and report.md)."""

import textwrap

from jaxpcam.core.metrics import show
from jaxpcam.evaluation.report import Report, cell, notes
from jaxpcam.evaluation.run_groups import Stat

WIDTH = 100
RUN_WIDTH = 26  # longer run names keep their end (seed42, optimizer=adam): it tells them apart
GAP = 2
INDENT = "  "


def short_name(name: str, width: int = RUN_WIDTH) -> str:
    return name if len(name) <= width else "…" + name[-(width - 1) :]


def compact_stat(stat: Stat, runs: int) -> str:
    """'0.8500±0.0500' for the group's n, else with '(n=K)'; '-' when no run has the value."""
    if stat.n == 0:
        return "-"
    text = show(stat.mean) if stat.n == 1 else f"{show(stat.mean)}±{show(stat.std)}"
    return text if stat.n == runs and runs > 1 else f"{text} (n={stat.n})"


def _column(report: Report, metric: str) -> list[str]:
    """The header and every cell a metric's column holds, to size it."""
    cells = [metric, *(cell(r, metric) for r in report.rows)]
    for group, stats in report.stats.items():
        cells.append(compact_stat(stats[metric], len(report.group_rows(group))))
    return cells


def shown_columns(report: Report, fixed: int, width: int = WIDTH) -> list[tuple[str, int]]:
    """(metric, width) for the metrics that fit after ``fixed`` characters, the champion's
    metric first, then in the report's order."""
    order = [report.champion_metric, *(c for c in report.columns if c != report.champion_metric)]
    chosen, used = [], fixed
    for metric in order:
        w = max(map(len, _column(report, metric)))
        if used + GAP + w <= width:
            chosen.append((metric, w))
            used += GAP + w
    return chosen


def _line(cells: list[str], widths: list[int]) -> str:
    first = cells[0].ljust(widths[0])
    rest = (cell.rjust(w) for cell, w in zip(cells[1:], widths[1:], strict=True))
    return (INDENT + (" " * GAP).join([first, *rest])).rstrip()


def to_terminal(report: Report, at: str, full_table: str, width: int = WIDTH) -> str:
    """The report in ``width`` columns; ``full_table`` names the files with every column."""
    names = [short_name(r.name) + (" *" if r is report.champion else "") for r in report.rows]
    run_w = max(len("mean±std"), *map(len, names))
    info_w = [max(len("seed"), *(len(str(r.info["seed"])) for r in report.rows)), len("epochs")]
    fixed = len(INDENT) + run_w + sum(GAP + w for w in info_w)
    columns = shown_columns(report, fixed, width)
    widths = [run_w, *info_w, *(w for _, w in columns)]
    out = []
    for group, stats in report.stats.items():
        rows = report.group_rows(group)
        out += textwrap.wrap(f"{group} ({len(rows)} run{'s' * (len(rows) != 1)})", width, subsequent_indent="    ")
        out.append(_line(["run", "seed", "epochs", *(m for m, _ in columns)], widths))
        for r in rows:
            cells = [names[report.rows.index(r)], str(r.info["seed"]), str(r.info["epochs"])]
            out.append(_line([*cells, *(cell(r, m) for m, _ in columns)], widths))
        out.append(_line(["mean±std", "", "", *(compact_stat(stats[m], len(rows)) for m, _ in columns)], widths))
        out.append("")
    hidden = len(report.columns) - len(columns)
    more = f"{hidden} more metric column{'s' * (hidden != 1)} and " if hidden else ""
    footer = [*notes(report, at), f"* champion. {more}best_epoch, model and the group of each run: {full_table}."]
    wrap = textwrap.TextWrapper(width, break_long_words=False, break_on_hyphens=False).wrap  # paths stay whole
    return "\n".join([*out, *(line for note in footer for line in wrap(note))])
