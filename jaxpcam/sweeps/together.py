"""``--vectorize``: the points of a sweep that differ only in ``seed`` (or
``training.learning_rate``) train together, as members of one compiled step
(jaxpcam/training/members.py), each in its own point directory with its own records, exactly
as if run one by one; the other points keep their own runs. Training is handed in
(``train_members``), as ``train`` is for single points (runner.py)."""

from collections.abc import Callable
from pathlib import Path

import ml_collections

from jaxpcam.core.errors import ConfigChanged, RunFailed, RunInUse, Stopped, UserError
from jaxpcam.run.keys import member_group_key
from jaxpcam.sweeps.runner import (
    log_sweep,
    point_done,
    point_failed,
    point_in_use,
    point_other_config,
    start_point,
)
from jaxpcam.sweeps.status import write_status

# trains configs in their run directories as members of one group; each member's summary, or
# the error that ended or refused that member alone (RunFailed, RunInUse, ConfigChanged)
TrainMembers = Callable[[list[ml_collections.ConfigDict], list[Path]], list]


def member_groups(points: list) -> list[list]:
    """The points in groups of configs that differ only in the member keys, in first-seen order."""
    groups: dict[tuple, list] = {}
    for p in points:
        groups.setdefault(member_group_key(p.config.to_dict()), []).append(p)
    return list(groups.values())


def run_points_together(points: list, sweep_dir: Path, train_members: TrainMembers, on_done=None) -> list[str]:
    """Trains ``points`` (one group) together, skipping the finished ones; returns each status."""
    statuses, todo = {}, []
    for p in points:
        skipped, before = start_point(p, sweep_dir)
        if skipped:
            statuses[p.index] = skipped
        else:
            todo.append((p, before))
    if todo:
        indices = ", ".join(str(p.index) for p, _ in todo)
        log_sweep(f"training {len(todo)} points together: {indices}" if len(todo) > 1 else f"training point {indices}")
        statuses.update(_train_together(todo, sweep_dir, train_members, on_done))
    return [statuses[p.index] for p in points]


def _train_together(todo: list, sweep_dir: Path, train_members: TrainMembers, on_done) -> dict[int, str]:
    try:
        outcomes = train_members([p.config for p, _ in todo], [sweep_dir / p.name for p, _ in todo])
    except (RunFailed, UserError) as err:  # the group could not train: its points failed, the sweep goes on
        return {p.index: point_failed(p, sweep_dir, err) for p, _ in todo}
    except Stopped as err:
        for p, _ in todo:
            write_status(p, sweep_dir / p.name, "stopped", str(err))
        raise
    return {
        p.index: _point_outcome(p, before, outcome, sweep_dir, on_done)
        for (p, before), outcome in zip(todo, outcomes, strict=True)
    }


def _point_outcome(p, before: dict, outcome, sweep_dir: Path, on_done) -> str:
    """A member's outcome as its point's status: trained, refused alone (the others trained), or failed."""
    if isinstance(outcome, ConfigChanged):
        return point_other_config(p, sweep_dir, before, outcome)
    if isinstance(outcome, RunInUse):
        return point_in_use(p, outcome)
    if isinstance(outcome, Exception):
        return point_failed(p, sweep_dir, outcome)
    return point_done(p, sweep_dir, on_done)
