"""The one exception type that means "the user asked for something we cannot do"."""


class UserError(Exception):
    """A mistake in the user's input: printed as one line, exit code 2, no traceback."""


class ConfigChanged(UserError):
    """A run directory holds a run made with a config that differs in a key that changes results.
    ``finding``: what differs, without the advice a single run's command gives (a sweep has its own)."""

    def __init__(self, message: str, finding: str | None = None):
        super().__init__(message)
        self.finding = finding or message


class RunInUse(UserError):
    """Another live process holds the run directory's lock (it is training there now).
    ``finding``: who holds it, without the advice a single run's command gives."""

    def __init__(self, message: str, finding: str | None = None):
        super().__init__(message)
        self.finding = finding or message


class RunFailed(Exception):
    """Training cannot go on (e.g. a non-finite loss): printed as one line, exit code 1."""


class Stopped(Exception):
    """The run checkpointed and stopped on a signal (SIGTERM/SIGINT); rerunning resumes it."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


class Interrupted(BaseException):
    """A signal (SIGTERM, SIGINT) stopped a command outside training's own checkpoint-and-stop: a
    BaseException, like KeyboardInterrupt, so no ``except Exception`` takes it for a failure."""

    def __init__(self, signal_name: str, exit_code: int):
        super().__init__(signal_name)
        self.signal_name, self.exit_code = signal_name, exit_code
