"""The one command-line convention of the seven jaxpcam commands.

Flags are absl flags, and ``--config FILE`` is ml_collections' config_flags, with which absl
parses ``--config.KEY=VALUE`` natively. Each command defines its flags on its own
``FlagValues`` (``command_flags()``), so commands run one after another in one process (as the
tests run them) neither share values nor collide, and answers ``main(argv=None) -> int``, where
``argv`` leaves out the program name (None: ``sys.argv[1:]``):

- ``--help``, ``-h`` (also absl's ``-?``, ``--helpshort``): the usage (the command's docstring
  and its own flags), exit code 0; ``--helpfull`` adds absl's own flags, such as ``--verbosity``;
- a bad value, a missing required flag or argument, an unknown flag or a surplus argument:
  one ``error:`` line and exit code 2 (``SystemExit``), before any work;
- then the run, in ``exit_code``: 0 done, 1 run failed, 2 bad input, 128+N stopped on signal N.

Library imports after parsing, kept where measured: main, sweep, evaluate, predict, export and
report import the library they call (it loads jax, 1-4 s) only once the flags parse, so --help
and a bad flag answer in ~0.2 s (evaluate: ~0.2 s against 3.6-5 s with its imports at the top,
shared 2-core machine); audit imports at the top (h5py, numpy, PIL: its --help takes ~0.45 s).
"""

import contextlib
import faulthandler
import sys
import textwrap
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

from absl import flags, logging

from jaxpcam.config.command_line import config_argument, unknown_key_message
from jaxpcam.config.files import load_config_file
from jaxpcam.core.errors import UserError
from jaxpcam.core.exits import exit_code, signals_as_interrupts

MAX_COUNT = 2**20


def command_flags() -> flags.FlagValues:
    """A command's own flag registry, with absl's logging flags (``--verbosity``...) shared from
    absl's global one, so they act on absl logging as in an ``app.run`` program."""
    flag_values = flags.FlagValues()
    for flag in flags.FLAGS.get_flags_for_module("absl.logging"):
        flag_values[flag.name] = flag
    return flag_values


class _CountParser(flags.ArgumentParser):
    """An integer in [1, MAX_COUNT], such as --batch_size."""

    syntactic_help = f"an integer in [1, {MAX_COUNT}]"

    def parse(self, argument) -> int:
        text = str(argument)
        if not text.lstrip("-").isdigit() or not 1 <= int(text) <= MAX_COUNT:
            raise ValueError(f"expected an integer in [1, {MAX_COUNT}], got {text!r}")
        return int(text)

    def flag_type(self) -> str:
        return "int"


def define_count(name: str, help_text: str, flag_values: flags.FlagValues) -> flags.FlagHolder:
    """An optional count flag (default None), such as --batch_size."""
    return flags.DEFINE(_CountParser(), name, None, help_text, flag_values=flag_values)


@dataclass(frozen=True)
class Arguments:
    """The positional arguments a command takes between its flags (by default none)."""

    missing: str = ""  # the error when none is given; empty: none are taken
    at_most: int | None = 0  # None: any number


NO_ARGUMENTS = Arguments()


def quiet_libraries() -> None:
    """Orbax and absl report routine things (read-only managers, renamed files) as warnings; after
    a damaged checkpoint read they echo the failure the command reports in one line."""
    logging.set_verbosity(logging.ERROR)
    logging.set_stderrthreshold(logging.ERROR)
    sys.unraisablehook = _drop_failed_read_echoes


def quiet_background_writes() -> None:
    """Training's quieting: Orbax logs every file it renames at INFO. A failed background
    checkpoint write is re-raised in the main thread and reported there in one line; Orbax's
    threads would repeat it as tracebacks (their own report, and 'Event loop is closed' while
    cancelling sibling writes)."""
    logging.set_verbosity(logging.WARNING)
    threading.excepthook = lambda args: None
    sys.unraisablehook = lambda unraisable: None
    logging.get_absl_logger().addFilter(_drop_orbax_background_reports)


def _drop_orbax_background_reports(record) -> bool:
    return not (record.levelno >= logging.ERROR and "orbax" in record.pathname and record.exc_info)


def _drop_failed_read_echoes(unraisable) -> None:
    """After a checkpoint read fails (a damaged file), TensorStore's pending callbacks and
    Orbax's abandoned coroutines report the same failure again as 'Exception ignored' tracebacks;
    the command has already said it in one line. Anything else is shown as usual."""
    text = str(unraisable.exc_value)
    if text == "Event loop is closed" or text.startswith("Encountered error while reading array index"):
        return
    sys.__unraisablehook__(unraisable)


def run_command(command: Callable[[], object], quiet: Callable[[], None] = quiet_libraries) -> int:
    """exit_code(command), with the libraries' routine reports quieted (``quiet``) unless
    --verbosity was given (``--verbosity=0`` shows them all)."""
    if not flags.FLAGS["verbosity"].present:
        quiet()
    with signals_as_interrupts():
        return exit_code(command)


SHORT_HELP = ("-h", "--help", "-help", "-?", "--helpshort", "-helpshort")  # absl's spellings and -h
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
    default = "" if flag.default in (None, False, []) else f" (default: {flag.default_as_str})"
    return textwrap.fill(
        f"{name}: {' '.join(flag.help.split())}{default}", width=100, initial_indent="  ", subsequent_indent="      "
    )


def own_flags(flag_values: flags.FlagValues) -> list[flags.Flag]:
    """The command's flags in the order it defined them: not absl's, not --config.KEY overrides."""
    shared = {flag.name for flag in flags.FLAGS.get_flags_for_module("absl.logging")}
    found = {}  # by name: a flag with a short name is listed under both
    for name in flag_values:
        flag = flag_values[name]
        if flag.name not in shared and not flag.name.startswith("config."):
            found.setdefault(flag.name, flag)
    return list(found.values())


def usage_text(doc: str, flag_values: flags.FlagValues, full: bool = False) -> str:
    """``usage:``, the command's docstring (its first line is the synopsis), then its own flags in
    the order it defines them; ``full`` lists every flag absl knows instead."""
    if full:
        listed = flag_values.get_help()
    else:
        entries = [_flag_entry(flag) for flag in own_flags(flag_values)]
        listed = "\n".join([*entries, "", "--helpfull lists every flag, absl's own (e.g. --verbosity) included."])
    return f"usage: {textwrap.dedent(doc).strip().replace('``', '')}\n\nflags:\n{listed}\n"


def _program(doc: str) -> str:
    """``python -m jaxpcam.NAME``: the synopsis's first three words."""
    return " ".join(doc.strip().strip("`").split()[:3])


def fail(message: str) -> NoReturn:
    """A mistake on the command line: one line, exit code 2."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def _forget_earlier_parse(flag_values: flags.FlagValues) -> None:
    """Back to the defaults, and without the --config.KEY flags ml_collections defined while
    parsing an earlier command line (it defines them again, and absl refuses a second definition)."""
    flag_values.unparse_flags()
    for name in [name for name in flag_values if name.startswith("config.")]:
        delattr(flag_values, name)


def parse(
    argv: list[str] | None,
    flag_values: flags.FlagValues,
    doc: str,
    required: tuple[str, ...] = (),
    arguments: Arguments = NO_ARGUMENTS,
) -> list[str]:
    """Parses ``argv`` (without the program name; None: sys.argv[1:]) into ``flag_values`` and
    returns the positional arguments, by the module docstring's convention: help exits with 0,
    any mistake is one ``error:`` line and exit code 2. With ``argv`` None the command is the
    process, and starts as an absl app would."""
    as_program = argv is None
    argv = sys.argv[1:] if as_program else list(argv)
    wanted = help_requested(argv)
    if wanted is not None:
        print(usage_text(doc, flag_values, full=wanted == "full"), end="")
        sys.exit(0)
    _forget_earlier_parse(flag_values)
    if "config" in flag_values:
        _check_config_file(argv, _program(doc), "config" in required)
    rest = _parse_flags(argv, flag_values)
    _check_tuples_given_once(argv, flag_values)
    missing = [name for name in required if flag_values[name].value is None]
    if missing:
        fail(f"{' and '.join(f'--{name}' for name in missing)} is required (--help lists the flags)")
    if not rest and arguments.missing:
        fail(arguments.missing)
    if arguments.at_most is not None and len(rest) > arguments.at_most:
        fail(f"unexpected arguments: {' '.join(rest[arguments.at_most :])} (options are written --name=value)")
    if as_program:
        _start_like_absl_app()
    return rest


def _check_tuples_given_once(argv: list[str], flag_values: flags.FlagValues) -> None:
    """ml_collections joins a tuple key given twice into one tuple (``hidden_units=(16,)`` then
    ``=(64,)`` trains (16, 64)): more likely a script appending an override than what was meant.
    A scalar given twice keeps the last, as launch scripts that set a default rely on."""
    given = [a.split("=", 1)[0].lstrip("-") for a in argv if a.startswith("--config.")]
    for name in sorted(set(given)):
        if given.count(name) > 1 and name in flag_values and isinstance(flag_values[name], flags.MultiFlag):
            fail(f"--{name} is given more than once: give a tuple once, as '(512, 256)'")


def _start_like_absl_app() -> None:
    """What absl's app.run does besides parsing, for a command that is the process (a call of
    main(argv) in a test or notebook leaves the process as it is): absl's flags count as parsed
    (the logging ones are the command's; Grain's workers read them), absl's log handler, and
    Python's tracebacks on a crash (SIGSEGV, SIGABRT)."""
    flags.FLAGS.mark_as_parsed()
    logging.use_absl_handler()
    with contextlib.suppress(OSError, ValueError):
        faulthandler.enable()


def _parse_flags(argv: list[str], flag_values: flags.FlagValues) -> list[str]:
    """absl's parse; ml_collections reads the --config.KEY overrides from sys.argv itself."""
    full = [sys.argv[0] if sys.argv else "jaxpcam", *argv]
    saved, sys.argv = sys.argv, full
    try:
        return flag_values(full)[1:]
    except flags.UnrecognizedFlagError as err:
        fail(f"{err} (--help lists the flags)")
    except flags.Error as err:
        fail(_value_message(str(err)))
    except (AttributeError, KeyError, TypeError, ValueError) as err:  # ml_collections' own, for a bad key path
        fail(unknown_key_message(argv) or f"bad config override: {err}")
    finally:
        sys.argv = saved


def _value_message(text: str) -> str:
    """absl's 'flag --name=value: why' without 'flag ', and without '--name=value: ' where the why
    names the flag itself (a validator's message)."""
    if not text.startswith("flag --"):
        return text
    name = text[len("flag ") :].split("=", 1)[0]
    why = text.partition(": ")[2]
    return why if why.startswith(f"{name} ") else text[len("flag ") :]


def _check_config_file(argv: list[str], program: str, required: bool) -> None:
    """The --config file is loaded here first: ml_collections would raise its errors as tracebacks
    from inside absl, or defer a missing file to the config's first use; and without --config absl
    would call a --config.KEY override an unknown flag."""
    spec = config_argument(argv)
    if spec is None and required:
        example = "configs/sweep_mlp.py" if program.endswith("sweep") else "configs/mlp.py"
        fail(f"--config is required: e.g. {program} --config {example}, then --config.KEY=VALUE to change a key "
             "(--help lists the flags)")  # fmt: skip
    if spec is not None:
        try:
            load_config_file(spec)
        except UserError as err:
            fail(str(err))
