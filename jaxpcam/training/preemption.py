"""SIGTERM (what SLURM sends before a kill) and Ctrl-C become a request to checkpoint and stop,
honoured within a bounded time however slow the steps are (measured: docs/failures-and-resume.md):

- the host never runs ahead of the device by more than the step in flight (``RunAhead``: one step
  when steps are slow, two when they are fast), so a stop never waits for a queue of dispatched
  steps;
- one process reads the request after every step; the processes of a multi-process job agree on it
  about every AGREE_SECONDS (``StopRequest.agreement_due``): every k steps, k computed on every
  process from the same gathered numbers (the slowest process's step time), so all stop at the
  same step.
"""

import collections
import signal
import time

import jax

from jaxpcam.training.parallel import agree_on_stop

AGREE_SECONDS = 5.0  # between agreements on a stop request across processes
SLOW_STEP_SECONDS = 0.5  # steps this slow: the host waits for each before dispatching the next


# A second signal this soon after the first is the same request delivered twice: GNU timeout
# signals its child and then its own process group, so `timeout -s TERM 1h python -m jaxpcam.main`
# sends two SIGTERMs at once, and the second aborted the stop the first asked for.
SAME_REQUEST_SECONDS = 0.5


class StopRequest:
    """Records the first SIGTERM/SIGINT; a second one of the same kind acts as usual (exits),
    unless it comes within SAME_REQUEST_SECONDS of the first."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, step: int = 0):
        self.signal_name: str | None = None
        self._previous, self._first_at = {}, {}  # signal -> when it first came
        self._next_agreement, self._mark, self._step = step + 1, (step, time.perf_counter()), step

    def __enter__(self) -> "StopRequest":
        for sig in self.SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame) -> None:
        now = time.monotonic()
        if signum not in self._first_at:
            self.signal_name, self._first_at[signum] = signal.Signals(signum).name, now
        elif now - self._first_at[signum] >= SAME_REQUEST_SECONDS:  # asked again: what it did before
            signal.signal(signum, self._previous[signum])
            signal.raise_signal(signum)

    @property
    def requested(self) -> bool:
        return self.signal_name is not None

    def agreement_due(self, step: int) -> bool:
        """Whether the processes agree on the request after ``step`` (the same answer on every one)."""
        self._step = step
        return step >= self._next_agreement

    def agree(self) -> bool:
        """True on every process when any was asked to stop; schedules the next agreement about
        AGREE_SECONDS of the slowest process's steps later."""
        (start, then), now = self._mark, time.perf_counter()
        mine = signal.Signals[self.signal_name].value if self.signal_name else 0
        number, slowest = agree_on_stop(mine, (now - then) / max(self._step - start, 1))
        self._next_agreement = self._step + max(1, int(AGREE_SECONDS // max(slowest, 1e-6)))
        self._mark = (self._step, now)
        if number and not self.signal_name:  # it reached another process: stop alike, saying which
            self.signal_name = signal.Signals(number).name
        return bool(number)


class RunAhead:
    """Bounds how far the host runs ahead of the device: after dispatching a step, waits for the
    previous one (fast steps) or for this one (steps of SLOW_STEP_SECONDS or more). ``wait`` is
    jax.block_until_ready; the values computed are the same either way."""

    def __init__(self, wait=jax.block_until_ready):
        self.in_flight, self.wait = collections.deque(), wait
        self.step_seconds, self._last = 0.0, None

    def dispatched(self, outputs) -> None:
        self.in_flight.append(outputs)
        limit = 0 if self.step_seconds >= SLOW_STEP_SECONDS else 1
        while len(self.in_flight) > limit:
            self.wait(self.in_flight.popleft())
            now = time.perf_counter()
            if self._last is not None:
                self.step_seconds = now - self._last
            self._last = now
