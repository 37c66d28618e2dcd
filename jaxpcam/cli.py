"""What every command-line tool shares: one-line errors with exit code 2, quiet library logs,
and absl flag parsing that reports an unknown ``--config.x`` key in one line."""

import importlib.util
import sys
from collections.abc import Callable

from absl import flags

from jaxpcam.errors import UserError


def quiet_libraries() -> None:
    """Orbax and absl report routine things (read-only managers, renamed files) as warnings."""
    from absl import logging

    logging.set_verbosity(logging.ERROR)
    logging.set_stderrthreshold(logging.ERROR)


def run_command(command: Callable[[], object]) -> int:
    """Runs ``command``; a user mistake or an unreadable file is one line on stderr and exit 2."""
    quiet_libraries()
    try:
        command()
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"error: {err.strerror or err}: {err.filename or ''}".rstrip(": "), file=sys.stderr)
        return 2
    return 0


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
