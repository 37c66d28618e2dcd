"""What every command-line tool shares: one-line errors with exit code 2, quiet library logs,
and absl flag parsing that reports an unknown ``--config.x`` key in one line and answers
``--help`` and ``-h`` with the usage and exit code 0, as argparse does for the other commands."""

import argparse
import os
import sys
import textwrap
from collections.abc import Callable

from absl import flags

from jaxpcam.config.files import load_config_file
from jaxpcam.core.errors import RunFailed, Stopped, UserError


def quiet_libraries() -> None:
    """Orbax and absl report routine things (read-only managers, renamed files) as warnings."""
    from absl import logging

    logging.set_verbosity(logging.ERROR)
    logging.set_stderrthreshold(logging.ERROR)


def _drop_failed_read_echoes(unraisable) -> None:
    """After a checkpoint read fails (a damaged file), TensorStore's pending callbacks and
    Orbax's abandoned coroutines report the same failure again as 'Exception ignored' tracebacks;
    the command has already said it in one line. Anything else is shown as usual."""
    text = str(unraisable.exc_value)
    if text == "Event loop is closed" or text.startswith("Encountered error while reading array index"):
        return
    sys.__unraisablehook__(unraisable)


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
    return 0


def run_command(command: Callable[[], object]) -> int:
    """exit_code(command) with the libraries' routine reports quieted."""
    quiet_libraries()
    sys.unraisablehook = _drop_failed_read_echoes
    return exit_code(command)


def positive_int(text: str) -> int:
    """argparse type for counts such as --batch_size."""
    if not text.lstrip("-").isdigit() or not 1 <= int(text) <= 2**20:
        raise argparse.ArgumentTypeError(f"expected an integer in [1, {2**20}], got {text!r}")
    return int(text)


def _config_argument(argv: list[str]) -> str | None:
    """The value of --config in argv (absl has not parsed it yet), or None."""
    for i, arg in enumerate(argv):
        for prefix in ("--config=", "-config="):
            if arg.startswith(prefix):
                return arg[len(prefix) :]
        if arg in ("--config", "-config") and i + 1 < len(argv):
            return argv[i + 1]
    return None


def _load_config_file(argv: list[str]):
    """The config named by --config in argv, loaded directly, or None if it does not load."""
    spec = _config_argument(argv)
    try:
        return None if spec is None else load_config_file(spec)
    except UserError:
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
            where = ".".join(path[:depth]) or "the config"
            if not hasattr(node, "keys"):
                return f"unknown config key {'.'.join(path)}: {where} is a value, not a section"
            if part not in node:
                return f"unknown config key {'.'.join(path)}: {where} has {', '.join(sorted(node.keys()))}"
            node = node[part]
    return None


SHORT_HELP = ("-h", "--help", "-help", "-?", "--helpshort", "-helpshort")  # absl's spellings and argparse's -h
FULL_HELP = ("--helpfull", "-helpfull")


def help_requested(argv: list[str]) -> str | None:
    """'short' or 'full' when the arguments (before a ``--``) ask for help, else None."""
    for arg in argv:
        if arg == "--":
            return None
        if arg in FULL_HELP:
            return "full"
        if arg in SHORT_HELP:
            return "short"
    return None


def _flag_entry(flag: flags.Flag) -> str:
    name = f"--[no]{flag.name}" if flag.boolean else f"--{flag.name}"
    default = "" if flag.default in (None, False) else f" (default: {flag.default_as_str})"
    return textwrap.fill(f"{name}: {flag.help}{default}", width=100, initial_indent="  ", subsequent_indent="      ")


def usage_text(doc: str, flag_values: flags.FlagValues, full: bool = False) -> str:
    """The command's docstring, then its own flags in the order it defines them (the module that
    defines --config, or __main__); ``full`` lists every flag absl knows instead."""
    if full:
        listed = flag_values.get_help()
    else:
        module = flag_values.find_module_defining_flag("config", default=sys.argv[0])
        entries = [_flag_entry(flag) for flag in flag_values.get_flags_for_module(module)]
        listed = "\n".join([*entries, "", "--helpfull lists every flag, absl's own (e.g. --verbosity) included."])
    return f"{textwrap.dedent(doc).strip()}\n\nflags:\n{listed}\n"


def parse_flags(argv: list[str], flag_values: flags.FlagValues = flags.FLAGS) -> list[str]:
    """absl's parser, but ``--help`` or ``-h`` (and absl's ``-?``, ``--helpshort``, ``--helpfull``)
    prints the usage (the __main__ module's docstring and the command's flags) and exits with 0
    (absl exits with 1 and knows no ``-h``), and a --config file that does not load (missing, a
    syntax error, a failing import or get_config()), a bad flag value or a config key that does
    not exist is one line and exit code 2.

    The --config file is loaded here first: ml_collections would raise its errors as tracebacks
    from inside absl, or defer a missing file to the config's first use."""
    wanted = help_requested(argv[1:])
    if wanted is not None:
        print(usage_text(sys.modules["__main__"].__doc__ or "", flag_values, full=wanted == "full"), end="")
        sys.exit(0)
    spec = _config_argument(argv[1:]) if "config" in flag_values else None
    if "config" in flag_values and spec is None:  # absl: "Unknown command line flag 'config.seed'" or "None"
        prog = f"python -m {sys.modules['__main__'].__spec__.name}" if sys.modules["__main__"].__spec__ else argv[0]
        example = "configs/sweep_mlp.py" if prog.endswith("sweep") else "configs/mlp.py"
        print(f"error: --config is required: e.g. {prog} --config {example}, then --config.KEY=VALUE to "
              "change a key (--help lists the flags)", file=sys.stderr)  # fmt: skip
        sys.exit(2)
    if spec is not None:
        try:
            load_config_file(spec)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)
    try:
        return flag_values(argv)
    except flags.Error as err:
        print(f"error: {err}", file=sys.stderr)
    except (AttributeError, KeyError, TypeError, ValueError) as err:  # ml_collections' own, for a bad key path
        message = _unknown_key_message(argv)
        print(f"error: {message or f'bad config override: {err}'}", file=sys.stderr)
    sys.exit(2)
