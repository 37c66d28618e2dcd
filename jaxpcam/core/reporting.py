"""How jaxpcam reports: log lines through one named logger, and metrics through one writer.

``log`` writes a timestamped line to stderr through the ``jaxpcam`` logger (stdlib logging, which
absl logging also builds on). It is ours, not absl's: absl's verbosity is shared with Orbax, whose
routine INFO reports the commands silence. In a multi-process job only process 0 speaks.
``logging.getLogger("jaxpcam").setLevel(logging.WARNING)`` quiets it; handlers may be added.
"""

import contextlib
import contextvars
import logging
import math
import shutil
import sys
import threading
import time
from collections.abc import Iterator

LOGGER = logging.getLogger("jaxpcam")


class _Stderr(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (a test's capture, a redirected stream).
    A live progress line drawn on the terminal is wiped first, so a log line never lands in the
    middle of it (the next ``ProgressLine.show`` draws it again below)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass

    def emit(self, record: logging.LogRecord) -> None:
        if ProgressLine.drawn:
            ProgressLine.drawn = False
            sys.stderr.write("\r\x1b[K")
        super().emit(record)


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


_PREFIX = contextvars.ContextVar("jaxpcam_log_prefix", default="")


@contextlib.contextmanager
def log_prefix(prefix: str) -> Iterator[None]:
    """Starts every line logged inside the block with ``prefix`` (a member's "[seed 43, lr 0.001] ",
    so the lines of its start-up, logged deep in data and resume code, say whose they are)."""
    token = _PREFIX.set(prefix)
    try:
        yield
    finally:
        _PREFIX.reset(token)


def log(message: str) -> None:
    """A timestamped line on stderr; in a multi-process job only process 0 speaks."""
    if _is_primary():
        LOGGER.info(_PREFIX.get() + message)


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


def count(n: int, noun: str) -> str:
    """'1 epoch', '2 epochs': a number with its noun in the right number."""
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


def format_duration(seconds: float) -> str:
    """h:mm:ss; "?" while it cannot be known yet (no pace measured)."""
    if not math.isfinite(seconds):
        return "?"
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class MetricWriter:
    """The one way jaxpcam writes TensorBoard data (the shape of clu's MetricWriter, over
    tensorboardX): training's scalars, evaluate's scalars, plots and PR curve, the sweep's
    HParams session. ``enabled=False`` (processes other than 0 of a job) writes nothing."""

    def __init__(self, logdir, *, purge_step: int | None = None, filename_suffix: str = "", enabled: bool = True):
        import tensorboardX  # deferred: only commands that write metrics pay for it

        self._tb, self._failures = None, []
        if enabled:
            self._tb = tensorboardX.SummaryWriter(
                str(logdir), purge_step=purge_step, flush_secs=30, filename_suffix=filename_suffix
            )
            # tensorboardX writes from a thread: a failed write (a full disk) would only be printed
            # there, and the command would report success. close() raises it instead.
            self._previous_hook = threading.excepthook
            threading.excepthook = self._record_thread_failure

    def _record_thread_failure(self, args) -> None:
        if isinstance(args.exc_value, OSError):
            self._failures.append(args.exc_value)
        else:
            self._previous_hook(args)

    def write_scalars(self, step: int, scalars: dict) -> None:
        if self._tb is not None:
            for tag, value in scalars.items():
                self._tb.add_scalar(tag, value, step)

    def write_images(self, step: int, images: dict) -> None:
        """(H, W, C) arrays, uint8 or floats in 0..1."""
        if self._tb is not None:
            for tag, image in images.items():
                self._tb.add_image(tag, image, step, dataformats="HWC")

    def write_pr_curve(self, step: int, tag: str, labels, probs) -> None:
        if self._tb is not None:
            self._tb.add_pr_curve(tag, labels, probs, step)

    def write_hparams(self, hparams: dict, metrics: dict) -> None:
        """One HParams session: TensorBoard's HParams tab lines up every run under a logdir."""
        if self._tb is None:
            return
        from tensorboardX.summary import hparams as hparams_summaries

        for summary in hparams_summaries(hparams, metrics):
            self._tb.file_writer.add_summary(summary)
        self.write_scalars(0, metrics)

    def close(self) -> None:
        """Flushes and closes; an OSError of the writing thread is raised here."""
        if self._tb is None:
            return
        try:
            self._tb.close()
        finally:
            threading.excepthook, self._tb = self._previous_hook, None
        if self._failures:
            raise self._failures[0]

    def __enter__(self) -> "MetricWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class ProgressLine:
    """A progress report that suits where stderr goes: on a terminal one line rewritten in place
    (``\\r``, the way tqdm draws); in a log file (a SLURM .out, a pipe) a plain timestamped line at
    most every ``every`` seconds and at the end, so the file stays readable."""

    drawn = False  # a live line is on the terminal now (there is one stderr per process)

    def __init__(self, every: float = 10.0, live: bool | None = None):
        self._clock, self._every = time.monotonic, every
        self._last = -float("inf")
        self.live = sys.stderr.isatty() if live is None else live

    def show(self, text: str, final: bool = False) -> None:
        if self.live:
            width = shutil.get_terminal_size((100, 24)).columns - 1
            print(f"\r\x1b[K{text[:width]}", end="\n" if final else "", file=sys.stderr, flush=True)
            ProgressLine.drawn = not final
        elif final or self._clock() - self._last >= self._every:
            self._last = self._clock()
            log(text)
