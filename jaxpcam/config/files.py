"""Loading configs and other user Python files (sweeps, slice functions, benchmarks' configs):
any failure (missing file, syntax error, a raising import or function, ``sys.exit()``) becomes one
UserError line naming the file and line."""

import importlib.machinery
import importlib.util
import traceback
from pathlib import Path

import ml_collections

from jaxpcam.core.errors import UserError


def _where(err: BaseException, path: Path) -> str:
    """', line N: Type: message', N being the line of ``path`` the error came from (if any)."""
    resolved = path.resolve()
    if isinstance(err, SyntaxError) and err.filename and Path(err.filename).resolve() == resolved:
        line, text = err.lineno, f"{type(err).__name__}: {err.msg}"
    else:
        frames = [f for f in traceback.extract_tb(err.__traceback__) if Path(f.filename).resolve() == resolved]
        line, text = (frames[-1].lineno if frames else None), f"{type(err).__name__}: {err}"
    text = " ".join(text.split())  # one line, whatever the message holds
    return f", line {line}: {text}" if line else f": {text}"


def load_python_file(path: str | Path, what: str = "--config"):
    """Executes the Python file ``path`` (a config, sweep or slice file) and returns it as a
    module. A missing file, a syntax error or a failing import is a UserError in one line naming
    the file, the line and the error, never a traceback."""
    path = Path(path)  # as ml_collections reads it: no '~' expansion, relative to the working directory
    if not path.is_file():
        raise UserError(f"cannot load the {what} file {path}: {'a folder' if path.is_dir() else 'no such file'}")
    name = f"_jaxpcam_{what.strip('-').replace(' ', '_')}_{path.stem}"
    try:
        loader = importlib.machinery.SourceFileLoader(name, str(path))  # any suffix, as ml_collections loads it
        module = importlib.util.module_from_spec(importlib.util.spec_from_loader(name, loader))
        loader.exec_module(module)
    except (Exception, SystemExit) as err:  # a file that calls sys.exit() too
        raise UserError(f"cannot load the {what} file {path}{_where(err, path)}") from None
    return module


def call_file_function(path: str | Path, function: str, *args, what: str = "--config"):
    """``function(*args)`` of the Python file ``path``; any failure is one line (load_python_file)."""
    path = Path(path)
    module = load_python_file(path, what)
    if not callable(getattr(module, function, None)):
        raise UserError(f"cannot load the {what} file {path}: it defines no {function}()")
    try:
        return getattr(module, function)(*args)
    except (Exception, SystemExit) as err:
        raise UserError(f"cannot load the {what} file {path}{_where(err, path)}") from None


def load_config_file(spec: str) -> ml_collections.ConfigDict:
    """What ``--config=spec`` gives: ``get_config()`` of the file, or ``get_config(arg)`` for
    'file.py:arg' (ml_collections' convention); any failure is one-line UserError."""
    path, *args = spec.split(":", 1)
    config = call_file_function(path, "get_config", *args)
    if not isinstance(config, ml_collections.ConfigDict):
        returned = type(config).__name__
        raise UserError(f"cannot load the --config file {path}: get_config() returned {returned}, not a ConfigDict")
    return config
