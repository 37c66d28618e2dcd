"""SIGTERM (what SLURM sends before a kill) and Ctrl-C become a request to checkpoint and stop."""

import signal


class StopRequest:
    """Records the first SIGTERM/SIGINT; a second one of the same kind acts as usual (exits)."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.signal_name: str | None = None
        self._previous = {}

    def __enter__(self) -> "StopRequest":
        for sig in self.SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame) -> None:
        self.signal_name = signal.Signals(signum).name
        signal.signal(signum, self._previous[signum])

    @property
    def requested(self) -> bool:
        return self.signal_name is not None
