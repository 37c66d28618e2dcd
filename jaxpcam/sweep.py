"""``python -m jaxpcam.sweep --config configs/sweep_mlp.py (--list | --index I | --all | --summary)``

--list     the points, their run directories and status, and how many there are
--index I  runs point I (0-based; a SLURM array task passes $SLURM_ARRAY_TASK_ID)
--all      runs every point in sequence here
--summary  only (re)writes the summary

Points run in ``--sweep_dir`` (default runs/<experiment_name>), one directory per point named by
its values. A finished point is skipped, an unfinished one resumes from its latest checkpoint,
a failed point (e.g. a diverging learning rate) is recorded and the others go on. After each
point, SWEEP_DIR/summary.md and summary.csv are rewritten (every point, best and final metrics,
the champion) and the point's HParams data is written for TensorBoard.
``--config.x=y`` overrides apply to the base config of every point. A point run with another
config (in a key that changes results, as resume judges) is refused by --index/--all in one line
before any work and listed as 'other config': a sweep with other overrides needs its own --sweep_dir.
"""

import sys
from pathlib import Path

from absl import app, flags
from ml_collections import config_flags

from jaxpcam.cli import parse_flags
from jaxpcam.core.errors import UserError
from jaxpcam.core.runtime import prepare_process
from jaxpcam.run import best
from jaxpcam.sweeps.runner import log_sweep, refuse_other_configs, run_point

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Required: a sweep file (get_config() and get_sweep()); --config.KEY=VALUE sets a base key."
)
_LIST = flags.DEFINE_bool("list", False, "Print the points and exit.")
_INDEX = flags.DEFINE_integer("index", None, "Run only this point (0-based), e.g. $SLURM_ARRAY_TASK_ID.")
_ALL = flags.DEFINE_bool("all", False, "Run every point in sequence.")
_SUMMARY = flags.DEFINE_bool("summary", False, "Only write the summary of what has run so far.")
_SWEEP_DIR = flags.DEFINE_string("sweep_dir", None, "Where the points run; default runs/<experiment_name>.")
_CHAMPION = flags.DEFINE_string(
    "champion", None, "Summary column that picks the champion (default best_<best_metric>)."
)
flags.mark_flags_as_required(["config"])


def write_summary(points, sweep_dir: Path, champion: str, champion_mode: str) -> str:
    from jaxpcam.core.files import write_json_atomic, write_text_atomic
    from jaxpcam.evaluation.sweep_summary import PointRow, summarize
    from jaxpcam.sweeps.status import point_epochs, point_status

    rows = [PointRow(p, d, point_status(p, d), point_epochs(p, d)) for p in points for d in [sweep_dir / p.name]]
    markdown, table, _ = summarize(rows, champion, champion_mode)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(sweep_dir / "summary.md", markdown + "\n")  # array tasks finish concurrently
    write_text_atomic(sweep_dir / "summary.csv", table)
    write_json_atomic(sweep_dir / "sweep.json", {"points": [{"index": p.index, **p.hparams} for p in points]})
    return markdown


SWEEP_KEEP = 1


def _keep_less(base, grid, overrides: dict) -> None:
    """Sweeps keep less by default: each point keeps its newest checkpoint, its latest epoch end
    and its best (checkpoint.keep=1), unless the sweep file, its grid or the command line chose."""
    from jaxpcam.config import base_config
    from jaxpcam.sweeps.grid import expand

    named = "checkpoint.keep" in overrides or any("checkpoint.keep" in p for p in expand(grid))
    if not named and base.checkpoint.keep == base_config().checkpoint.keep:
        base.checkpoint.keep = SWEEP_KEEP


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        print(f"error: unexpected arguments: {' '.join(argv[1:])} (options are written --name=value)", file=sys.stderr)
        sys.exit(2)
    from jaxpcam.cli import exit_code, quiet_libraries
    from jaxpcam.evaluation.sweep_summary import write_hparams
    from jaxpcam.sweeps.grid import load_sweep, points
    from jaxpcam.sweeps.status import point_epochs, point_status

    quiet_libraries()
    statuses = []

    def sweep() -> None:
        chosen = [_LIST.value, _ALL.value, _SUMMARY.value, _INDEX.value is not None]
        if sum(chosen) != 1:
            raise UserError("choose one of --list, --index I, --all, --summary")
        base = _CONFIG.value
        grid = load_sweep(config_flags.get_config_filename(flags.FLAGS["config"]))
        _keep_less(base, grid, config_flags.get_override_values(flags.FLAGS["config"]))
        sweep_points = points(base, grid)
        sweep_dir = Path(_SWEEP_DIR.value or Path("runs") / base.experiment_name)
        champion = _CHAMPION.value or f"best_{base.checkpoint.best_metric}"
        if _LIST.value:
            for p in sweep_points:
                epochs = "{}/{} ep".format(*point_epochs(p, sweep_dir / p.name))  # finished/trained for
                print(f"{p.index:3d}  {point_status(p, sweep_dir / p.name):12}  {epochs:>9}  {sweep_dir / p.name}")
            print(f"{len(sweep_points)} points in {sweep_dir}")
            return
        if _INDEX.value is not None and not 0 <= _INDEX.value < len(sweep_points):
            raise UserError(f"--index {_INDEX.value}: the sweep has points 0..{len(sweep_points) - 1}")
        todo = [] if _SUMMARY.value else sweep_points if _ALL.value else [sweep_points[_INDEX.value]]
        refuse_other_configs(todo, sweep_dir)
        statuses.extend(run_point(p, sweep_dir, on_done=write_hparams) for p in todo)
        mode = best.column_mode(champion, base.checkpoint.best_metric, base.checkpoint.best_mode)
        markdown = write_summary(sweep_points, sweep_dir, champion, mode)
        if _ALL.value or _SUMMARY.value:
            print(markdown)
        log_sweep(f"summary: {sweep_dir / 'summary.md'} (TensorBoard HParams: tensorboard --logdir {sweep_dir})")

    code = exit_code(sweep)
    sys.exit(code if code or not {"failed", "other config"} & set(statuses) else 1)


if __name__ == "__main__":
    prepare_process()
    app.run(main, flags_parser=parse_flags)
