"""How every jaxpcam command ends: one line on stderr (never a traceback for what a user or
the machine did) and the exit code: 0 done, 1 run failed, 2 bad input, 128+N stopped on signal N.

A signal at any moment, start-up included, ends in one line: while a command runs, SIGTERM and
SIGINT raise ``Interrupted`` (training replaces them with its own checkpoint-and-stop while it
trains). An allocation that fails (XLA's RESOURCE_EXHAUSTED, MemoryError) is one line too.
"""

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable

from jaxpcam.core.errors import Interrupted, RunFailed, Stopped, UserError


def exit_code(command: Callable[[], object]) -> int:
    """Runs ``command`` and turns how it ended into one line on stderr and the exit code every
    jaxpcam command uses: 0 done, 1 run failed, 2 bad input (a user mistake, an unreadable
    file), 128+N stopped on signal N after checkpointing."""
    try:
        command()
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
    except BrokenPipeError:
        # The reader stopped early (`... --list | head`): what it read is all it wanted.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + 13  # as if killed by SIGPIPE, what shells expect of a cut-off writer
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"error: {err.strerror or err}: {err.filename or ''}".rstrip(": "), file=sys.stderr)
        return 2
    except RunFailed as err:
        print(f"run failed: {err}", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        # Everything is closed; skip interpreter shutdown, where tensorstore callbacks of a
        # failed write would print 'Event loop is closed' tracebacks.
        os._exit(1)
    except Stopped as err:
        print(f"stopped on {err}", file=sys.stderr)
        return err.exit_code
    except (Interrupted, KeyboardInterrupt) as err:
        name, code = (err.signal_name, err.exit_code) if isinstance(err, Interrupted) else ("SIGINT", 130)
        print(f"stopped on {name} before the command finished: {INTERRUPTED}", file=sys.stderr)
        return code
    except Exception as err:
        if not _out_of_memory(err):
            raise
        print(f"run failed: out of memory: {_first_line(err)}; {OUT_OF_MEMORY_HINT}", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)
    return 0


INTERRUPTED = (
    "its files are written whole or not at all, so nothing is half-written and earlier results are as they "
    "were; run it again (a training resumes from its latest checkpoint)"
)
OUT_OF_MEMORY_HINT = "lower data.batch_size, data.eval_batch_size or --batch_size, or choose a smaller model"


def _out_of_memory(err: BaseException) -> bool:
    """XLA's RESOURCE_EXHAUSTED (an allocation on the device or host failed), or Python's MemoryError."""
    xla = type(err).__name__ in ("XlaRuntimeError", "JaxRuntimeError") and "RESOURCE_EXHAUSTED" in str(err)
    return xla or isinstance(err, MemoryError)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:300] if text else type(err).__name__


def _raise_interrupted(signum, frame) -> None:
    name = signal.Signals(signum).name
    raise Interrupted(name, 128 + signum)


REDELIVER_SECONDS = 0.05


def _redeliver_swallowed(previous_hook):
    """An unraisable-exception hook: Interrupted raised where Python only prints and ignores an
    exception (a garbage-collection callback, such as jax's, which the signal's handler happened
    to interrupt) is not lost: the signal is sent again, from another thread a moment later,
    so that the handler runs once that callback is over (a Ctrl-C on export was printed as a traceback and
    the export went on to exit 0)."""

    def hook(unraisable) -> None:
        err = unraisable.exc_value
        if not isinstance(err, Interrupted):
            previous_hook(unraisable)
            return
        signum = err.exit_code - 128
        resend = threading.Timer(REDELIVER_SECONDS, os.kill, (os.getpid(), signum))  # after this hook returns
        resend.daemon = True
        resend.start()

    return hook


@contextlib.contextmanager
def signals_as_interrupts():
    """SIGTERM (and SIGINT) become Interrupted while a command runs, so a stop at any moment
    (start-up included) ends in one line; training replaces them with its checkpoint-and-stop."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _raise_interrupted) for sig in (signal.SIGTERM, signal.SIGINT)}
    previous_hook, sys.unraisablehook = sys.unraisablehook, _redeliver_swallowed(sys.unraisablehook)
    try:
        yield
    finally:
        sys.unraisablehook = previous_hook
        for sig, handler in previous.items():
            signal.signal(sig, handler)
