"""``python -m jaxpcam.main --config FILE [--config.KEY=VALUE ...] [--workdir DIR] [--start_fresh]``

Trains the model of a config file (configs/mlp.py, cnn.py, resnet.py, smlp_digits.py, or your own
that starts from jaxpcam.config.base_config()) in --workdir, and resumes from its latest checkpoint
when there is one (rerun the same command). Any config key is set on the command line with
--config.KEY=VALUE, e.g. --config.training.epochs=3, --config.data.dir=/path/to/pcam or
--config.model.hidden_units='(512, 256)'; a resumed run refuses keys that change its results.
A mistake ends with one error: line and exit code 2, a failed run with exit code 1.
"""

import sys
from pathlib import Path

from absl import flags
from ml_collections import config_flags

from jaxpcam import cli
from jaxpcam.core.runtime import prepare_process

FLAGS = cli.command_flags()
_CONFIG = config_flags.DEFINE_config_file(
    "config",
    None,
    "Required: a config file (configs/*.py); --config.KEY=VALUE sets one of its keys.",
    flag_values=FLAGS,
    lock_config=True,
)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Run directory; default runs/<experiment_name>/seed<seed>.", flag_values=FLAGS
)
flags.register_validator(
    "workdir",
    lambda value: value is None or bool(value.strip()),
    "--workdir is empty; give a folder, or leave the flag out for the default",
    flag_values=FLAGS,
)
_START_FRESH = flags.DEFINE_bool(
    "start_fresh",
    False,
    "Move an earlier run in --workdir to <workdir>/archive/<time>/ and start over.",
    flag_values=FLAGS,
)
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address",
    None,
    "Multi-process: host:port of process 0 (not needed under srun, which JAX detects).",
    flag_values=FLAGS,
)
_NUM_PROCESSES = flags.DEFINE_integer(
    "num_processes", None, "Multi-process: how many processes in all.", flag_values=FLAGS
)
_PROCESS_ID = flags.DEFINE_integer(
    "process_id", None, "Multi-process: this process's index, 0..num_processes-1.", flag_values=FLAGS
)


def main(argv: list[str] | None = None) -> int:
    cli.parse(argv, FLAGS, __doc__, required=("config",))  # loads the config file: a failure is one line there

    def train() -> None:
        # After parsing: jax takes seconds to import, --help and a bad flag answer at once; inside
        # the command, so a signal while it imports is one line too.
        from jaxpcam.training.loop import default_workdir, train_and_evaluate
        from jaxpcam.training.parallel import initialize_processes

        config = _CONFIG.value
        workdir = Path(_WORKDIR.value) if _WORKDIR.value else default_workdir(config)
        initialize_processes(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
        train_and_evaluate(config, workdir, start_fresh=_START_FRESH.value)

    return cli.run_command(train, quiet=cli.quiet_background_writes)


if __name__ == "__main__":
    prepare_process()
    sys.exit(main())
