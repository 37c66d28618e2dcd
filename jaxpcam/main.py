"""``python -m jaxpcam.main --config FILE [--config.KEY=VALUE ...] [--workdir DIR] [--start_fresh]``

Trains the model of a config file (configs/mlp.py, cnn.py, resnet.py, smlp_digits.py, or your own
that starts from jaxpcam.config.base_config()) in --workdir, and resumes from its latest checkpoint
when there is one (rerun the same command). Any config key is set on the command line with
--config.KEY=VALUE, e.g. --config.training.epochs=3, --config.data.dir=/path/to/pcam or
--config.model.hidden_units='(512, 256)'; a resumed run refuses keys that change its results.
A mistake ends with one error: line and exit code 2, a failed run with exit code 1.
"""

import sys
import threading
from pathlib import Path

from absl import app, flags, logging
from ml_collections import config_flags

from jaxpcam.cli import exit_code, parse_flags
from jaxpcam.core.runtime import prepare_process

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Required: a config file (configs/*.py); --config.KEY=VALUE sets one of its keys.", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory; default runs/<experiment_name>/seed<seed>.")
_START_FRESH = flags.DEFINE_bool(
    "start_fresh", False, "Move an earlier run in --workdir to <workdir>/archive/<time>/ and start over."
)
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "Multi-process: host:port of process 0 (not needed under srun, which JAX detects)."
)
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Multi-process: how many processes in all.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "Multi-process: this process's index, 0..num_processes-1.")
flags.mark_flags_as_required(["config"])


def _drop_orbax_background_reports(record) -> bool:
    return not (record.levelno >= logging.ERROR and "orbax" in record.pathname and record.exc_info)


def main(argv: list[str]) -> None:
    """Hands the parsed flags to train_and_evaluate; every ending is one line and an exit code."""
    if len(argv) > 1:
        print(f"error: unexpected arguments: {' '.join(argv[1:])} (options are written --name=value)", file=sys.stderr)
        sys.exit(2)
    # after flag parsing: jax is slow to import
    from jaxpcam.training.loop import default_workdir, train_and_evaluate
    from jaxpcam.training.parallel import initialize_processes

    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # Orbax logs every file it renames at INFO
        # A failed background checkpoint write is re-raised in the main thread and reported
        # there in one line; Orbax's threads would repeat it as tracebacks (their own report,
        # and 'Event loop is closed' while cancelling sibling writes). --verbosity=0 shows all.
        threading.excepthook = lambda args: None
        sys.unraisablehook = lambda unraisable: None
        logging.get_absl_logger().addFilter(_drop_orbax_background_reports)
    config = _CONFIG.value  # parse_flags has loaded the file once already: a failure was one line there
    if _WORKDIR.value is not None and not _WORKDIR.value.strip():
        print("error: --workdir is empty; give a folder, or leave the flag out for the default", file=sys.stderr)
        sys.exit(2)
    workdir = Path(_WORKDIR.value) if _WORKDIR.value else default_workdir(config)

    def train() -> None:
        initialize_processes(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
        train_and_evaluate(config, workdir, start_fresh=_START_FRESH.value)

    sys.exit(exit_code(train))


if __name__ == "__main__":
    prepare_process()
    app.run(main, flags_parser=parse_flags)
