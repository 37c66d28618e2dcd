"""``python -m jaxpcam.sweep --config configs/sweep_mlp.py (--list | --index I | --all | --summary)``

--list     the points, their run directories and status, and how many there are
--index I  runs point I (0-based; a SLURM array task passes $SLURM_ARRAY_TASK_ID)
--all      runs every point in sequence here
--summary  only (re)writes the summary
--vectorize  with --all: the points that differ only in seed or training.learning_rate
           train together, one compiled step for all, each in its own point directory with
           everything its own run would write (as many as fit the device at once)

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

from absl import flags
from ml_collections import config_flags

from jaxpcam import cli
from jaxpcam.core.runtime import prepare_process

FLAGS = cli.command_flags()
_CONFIG = config_flags.DEFINE_config_file(
    "config",
    None,
    "Required: a sweep file (get_config() and get_sweep()); --config.KEY=VALUE sets a base key.",
    flag_values=FLAGS,
)
_LIST = flags.DEFINE_bool("list", False, "Print the points and exit.", flag_values=FLAGS)
_INDEX = flags.DEFINE_integer(
    "index", None, "Run only this point (0-based), e.g. $SLURM_ARRAY_TASK_ID.", flag_values=FLAGS
)
_ALL = flags.DEFINE_bool("all", False, "Run every point in sequence.", flag_values=FLAGS)
_SUMMARY = flags.DEFINE_bool("summary", False, "Only write the summary of what has run so far.", flag_values=FLAGS)
_SWEEP_DIR = flags.DEFINE_string(
    "sweep_dir", None, "Where the points run; default runs/<experiment_name>.", flag_values=FLAGS
)
_VECTORIZE = flags.DEFINE_bool(
    "vectorize",
    False,
    "Train the points that differ only in seed or training.learning_rate together (one compiled step).",
    flag_values=FLAGS,
)
_CHAMPION = flags.DEFINE_string(
    "champion", None, "Summary column that picks the champion (default best_<best_metric>).", flag_values=FLAGS
)


def main(argv: list[str] | None = None) -> int:
    cli.parse(argv, FLAGS, __doc__, required=("config",))
    if sum([_LIST.value, _ALL.value, _SUMMARY.value, _INDEX.value is not None]) != 1:
        cli.fail("choose one of --list, --index I, --all, --summary")
    if _VECTORIZE.value and not _ALL.value:
        cli.fail("--vectorize trains points together: use it with --all")
    failed = []

    def sweep() -> None:
        # After parsing: the sweep's status and training import jax, which takes seconds. Inside
        # the command, so a signal while it imports is one line too.
        from jaxpcam.evaluation.sweep_summary import PointRow, check_summary_files, write_hparams, write_summary
        from jaxpcam.sweeps.driver import any_point_failed, chosen_points, listing, plan_sweep, point_states, run_sweep
        from jaxpcam.sweeps.runner import log_sweep
        from jaxpcam.training.loop import train_and_evaluate, train_members

        config = FLAGS["config"]
        plan = plan_sweep(
            _CONFIG.value,
            config_flags.get_config_filename(config),
            config_flags.get_override_values(config),
            _SWEEP_DIR.value,
            _CHAMPION.value,
        )
        if _LIST.value:
            print(listing(plan))
            return
        check_summary_files(plan.sweep_dir)  # before any point trains: the summary goes there after
        todo = chosen_points(plan, _INDEX.value, _ALL.value)
        together = train_members if _VECTORIZE.value else None
        statuses = list(run_sweep(plan, todo, train_and_evaluate, write_hparams, together))
        failed.append(any_point_failed(statuses))
        rows = [PointRow(*state) for state in point_states(plan)]
        markdown = write_summary(rows, plan.sweep_dir, plan.champion, plan.champion_mode)
        log_sweep(
            f"summary: {plan.sweep_dir / 'summary.md'} (TensorBoard HParams: tensorboard --logdir {plan.sweep_dir})"
        )
        if _ALL.value or _SUMMARY.value:
            print(markdown)

    code = cli.run_command(sweep)
    return code if code or not any(failed) else 1


if __name__ == "__main__":
    prepare_process()
    sys.exit(main())
