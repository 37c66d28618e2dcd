"""How jaxpcam reports: log lines through one named logger, and metrics through one writer.

``log`` writes a timestamped line to stderr through the ``jaxpcam`` logger (stdlib logging, which
absl logging also builds on). It is ours, not absl's: absl's verbosity is shared with Orbax, whose
routine INFO reports the commands silence. In a multi-process job only process 0 speaks.
``logging.getLogger("jaxpcam").setLevel(logging.WARNING)`` quiets it; handlers may be added.
"""

import contextlib
import logging
import sys
from collections.abc import Iterator

LOGGER = logging.getLogger("jaxpcam")


class _Stderr(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (a test's capture, a redirected stream)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


if not LOGGER.handlers:
    _handler = _Stderr()
    _handler.setFormatter(logging.Formatter("[%(asctime)s] %(message)s", datefmt="%H:%M:%S"))
    LOGGER.addHandler(_handler)
    LOGGER.setLevel(logging.INFO)
    LOGGER.propagate = False


def _is_primary() -> bool:
    if "jax" not in sys.modules:  # nothing started JAX (a data-only script): one process
        return True
    import jax

    return jax.process_index() == 0


def log(message: str) -> None:
    """A timestamped line on stderr; in a multi-process job only process 0 speaks."""
    if _is_primary():
        LOGGER.info(message)


@contextlib.contextmanager
def captured_log() -> Iterator[list[str]]:
    """The messages logged inside the block (for tests and tools)."""
    messages: list[str] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    handler = _Collect()
    LOGGER.addHandler(handler)
    try:
        yield messages
    finally:
        LOGGER.removeHandler(handler)


def format_duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
