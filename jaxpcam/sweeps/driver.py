"""What ``python -m jaxpcam.sweep`` does with its parsed flags: the sweep's points (its base
config keeping less by default), their listing, running the chosen ones, and each point's state
for the summary (written by jaxpcam/evaluation/sweep_summary.py)."""

import dataclasses
from pathlib import Path

import ml_collections

from jaxpcam.config import base_config
from jaxpcam.core.errors import UserError
from jaxpcam.run import best
from jaxpcam.sweeps.grid import Point, expand, load_sweep, points
from jaxpcam.sweeps.runner import Train, refuse_other_configs, run_point
from jaxpcam.sweeps.status import point_epochs, point_status
from jaxpcam.sweeps.together import TrainMembers, member_groups, run_points_together

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


def point_states(sweep: Sweep) -> list[tuple[Point, Path, str, tuple[int, int]]]:
    """Each point with its run directory, status and epochs (finished, trained for): what the
    summary (jaxpcam/evaluation/sweep_summary.py) shows."""
    dirs = [(p, sweep.sweep_dir / p.name) for p in sweep.points]
    return [(p, d, point_status(p, d), point_epochs(p, d)) for p, d in dirs]


def run_sweep(
    sweep: Sweep, todo: list[Point], train: Train, on_done=None, train_members: TrainMembers | None = None
) -> list[str]:
    """Runs ``todo`` with ``train`` (refused at once when a point holds another config); returns
    each point's status. ``on_done(point, run_dir)`` runs after a point finished training. With
    ``train_members`` (--vectorize) the points that differ only in seed or learning rate train
    together, a group at a time."""
    refuse_other_configs(todo, sweep.sweep_dir)
    if train_members is None:
        return [run_point(p, sweep.sweep_dir, train, on_done) for p in todo]
    statuses = {}
    for group in member_groups(todo):
        if len(group) == 1:
            statuses[group[0].index] = run_point(group[0], sweep.sweep_dir, train, on_done)
        else:
            done = run_points_together(group, sweep.sweep_dir, train_members, on_done)
            statuses.update({p.index: s for p, s in zip(group, done, strict=True)})
    return [statuses[p.index] for p in todo]


def any_point_failed(statuses: list[str]) -> bool:
    """A point that failed or holds another config makes the sweep's exit code 1."""
    return bool({"failed", "other config"} & set(statuses))
