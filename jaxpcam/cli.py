"""What every command-line tool shares: one-line errors with exit code 2, quiet library logs."""

import sys
from collections.abc import Callable

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
