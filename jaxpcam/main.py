"""Entry point: ``python -m jaxpcam.main --config configs/mlp.py [--workdir DIR] [--config.x=y]``.

Parses flags and hands over to :func:`jaxpcam.training.loop.train_and_evaluate`; a user error
or a failed run ends with one line on stderr and a non-zero exit code, not a traceback.
"""

import importlib.util
import os
import sys
import threading
from pathlib import Path

from absl import app, flags, logging
from ml_collections import config_flags

from jaxpcam.errors import RunFailed, Stopped, UserError

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a config file (configs/*.py).", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory; default runs/<experiment_name>/seed<seed>.")
_START_FRESH = flags.DEFINE_bool(
    "start_fresh", False, "Move an earlier run in --workdir to <workdir>/archive/<time>/ and start over."
)
flags.mark_flags_as_required(["config"])


def _load_config_file(argv: list[str]):
    """The config named by --config in argv, loaded directly (absl has not loaded it yet)."""
    for i, arg in enumerate(argv):
        if arg.startswith("--config="):
            path = arg.split("=", 1)[1]
        elif arg == "--config" and i + 1 < len(argv):
            path = argv[i + 1]
        else:
            continue
        try:
            spec = importlib.util.spec_from_file_location("_jaxpcam_config", path.split(":", 1)[0])
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module.get_config()
        except Exception:
            return None
    return None


def _unknown_key_message(argv: list[str]) -> str | None:
    """For --config.a.b=v naming no key of the loaded config: which key, and what exists there."""
    config = _load_config_file(argv)
    if config is None:
        return None
    for arg in argv[1:]:
        if not arg.startswith("--config."):
            continue
        path = arg[len("--config.") :].split("=", 1)[0].split(".")
        node = config
        for depth, part in enumerate(path):
            if not hasattr(node, "keys") or part not in node:
                where = ".".join(path[:depth]) or "the config"
                known = ", ".join(sorted(node.keys())) if hasattr(node, "keys") else "(not a section)"
                return f"unknown config key {'.'.join(path)}: {where} has {known}"
            node = node[part]
    return None


def parse_flags(argv: list[str]) -> list[str]:
    """absl's parser, but a config key that does not exist is one line and exit code 2."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as err:
        print(f"error: {err}", file=sys.stderr)
    except (AttributeError, KeyError) as err:
        message = _unknown_key_message(argv)
        print(f"error: {message or f'bad config override: {err}'}", file=sys.stderr)
    sys.exit(2)


def _drop_orbax_background_reports(record) -> bool:
    return not (record.levelno >= logging.ERROR and "orbax" in record.pathname and record.exc_info)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from jaxpcam.training.loop import default_workdir, train_and_evaluate  # after flag parsing: jax is slow to import

    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # Orbax logs every file it renames at INFO
        # A failed background checkpoint write is re-raised in the main thread and reported
        # there in one line; Orbax's threads would repeat it as tracebacks (their own report,
        # and 'Event loop is closed' while cancelling sibling writes). --verbosity=0 shows all.
        threading.excepthook = lambda args: None
        sys.unraisablehook = lambda unraisable: None
        logging.get_absl_logger().addFilter(_drop_orbax_background_reports)
    config = _CONFIG.value
    try:
        config.experiment_name  # noqa: B018 - ml_collections defers a load failure to first use
    except OSError as err:
        detail = " ".join(line.strip() for line in str(err).splitlines()[1:])
        print(f"error: cannot load the --config file: {detail}", file=sys.stderr)
        sys.exit(2)
    workdir = Path(_WORKDIR.value) if _WORKDIR.value else default_workdir(config)
    try:
        train_and_evaluate(config, workdir, start_fresh=_START_FRESH.value)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except RunFailed as err:
        print(f"run failed: {err}", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        # Everything is closed; skip interpreter shutdown, where tensorstore callbacks of a
        # failed write would print 'Event loop is closed' tracebacks.
        os._exit(1)
    except Stopped as err:
        print(f"stopped on {err}", file=sys.stderr)
        sys.exit(err.exit_code)


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
