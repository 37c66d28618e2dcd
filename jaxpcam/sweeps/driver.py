"""What ``python -m jaxpcam.sweep`` does with its parsed flags: the sweep's points (its base
config keeping less by default), their listing, running the chosen ones, and the summary files."""

import dataclasses
from pathlib import Path

import ml_collections

from jaxpcam.config import base_config
from jaxpcam.core.errors import UserError
from jaxpcam.core.files import write_json_atomic, write_text_atomic
from jaxpcam.run import best
from jaxpcam.sweeps.grid import Point, expand, load_sweep, points
from jaxpcam.sweeps.runner import Train, log_sweep, refuse_other_configs, run_point
from jaxpcam.sweeps.status import point_epochs, point_status, summarize

SWEEP_KEEP = 1


@dataclasses.dataclass(frozen=True)
class Sweep:
    points: list[Point]
    sweep_dir: Path
    champion: str  # the summary column that picks the champion
    champion_mode: str  # 'min' or 'max'


def keep_less(base: ml_collections.ConfigDict, grid, overrides: dict) -> None:
    """Sweeps keep less by default: each point keeps its newest checkpoint, its latest epoch end
    and its best (checkpoint.keep=1), unless the sweep file, its grid or the command line chose."""
    named = "checkpoint.keep" in overrides or any("checkpoint.keep" in p for p in expand(grid))
    if not named and base.checkpoint.keep == base_config().checkpoint.keep:
        base.checkpoint.keep = SWEEP_KEEP


def plan_sweep(
    base: ml_collections.ConfigDict, sweep_file: str, overrides: dict, sweep_dir: str | None, champion: str | None
) -> Sweep:
    """The sweep of ``sweep_file``'s grid over ``base`` (the file's config with the command line's
    ``overrides``), run in ``sweep_dir`` (default runs/<experiment_name>)."""
    grid = load_sweep(sweep_file)
    keep_less(base, grid, overrides)
    champion = champion or f"best_{base.checkpoint.best_metric}"
    mode = best.column_mode(champion, base.checkpoint.best_metric, base.checkpoint.best_mode)
    return Sweep(points(base, grid), Path(sweep_dir or Path("runs") / base.experiment_name), champion, mode)


def listing(sweep: Sweep) -> str:
    """Each point's index, status, epochs finished/trained for and run directory; then the count."""
    lines = []
    for p in sweep.points:
        run_dir = sweep.sweep_dir / p.name
        epochs = "{}/{} ep".format(*point_epochs(p, run_dir))
        lines.append(f"{p.index:3d}  {point_status(p, run_dir):12}  {epochs:>9}  {run_dir}")
    return "\n".join([*lines, f"{len(sweep.points)} points in {sweep.sweep_dir}"])


def chosen_points(sweep: Sweep, index: int | None, run_all: bool) -> list[Point]:
    """The points to run: all, the one at ``index``, or none (only the summary)."""
    if run_all:
        return sweep.points
    if index is None:
        return []
    if not 0 <= index < len(sweep.points):
        raise UserError(f"--index {index}: the sweep has points 0..{len(sweep.points) - 1}")
    return [sweep.points[index]]


def write_summary(sweep: Sweep) -> str:
    """SWEEP_DIR/summary.md, summary.csv and sweep.json of every point so far; returns the Markdown."""
    run_dirs = [sweep.sweep_dir / p.name for p in sweep.points]
    markdown, table, _ = summarize(sweep.points, run_dirs, sweep.champion, sweep.champion_mode)
    sweep.sweep_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(sweep.sweep_dir / "summary.md", markdown + "\n")  # array tasks finish concurrently
    write_text_atomic(sweep.sweep_dir / "summary.csv", table)
    payload = {"points": [{"index": p.index, **p.hparams} for p in sweep.points]}
    write_json_atomic(sweep.sweep_dir / "sweep.json", payload)
    return markdown


def run_sweep(sweep: Sweep, todo: list[Point], train: Train) -> tuple[list[str], str]:
    """Runs ``todo`` with ``train`` (refused at once when a point holds another config), then
    rewrites the summary; returns each point's status and the summary's Markdown."""
    refuse_other_configs(todo, sweep.sweep_dir)
    statuses = [run_point(p, sweep.sweep_dir, train) for p in todo]
    markdown = write_summary(sweep)
    log_sweep(
        f"summary: {sweep.sweep_dir / 'summary.md'} (TensorBoard HParams: tensorboard --logdir {sweep.sweep_dir})"
    )
    return statuses, markdown


def any_point_failed(statuses: list[str]) -> bool:
    """A point that failed or holds another config makes the sweep's exit code 1."""
    return bool({"failed", "other config"} & set(statuses))
