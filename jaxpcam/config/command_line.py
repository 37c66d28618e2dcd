"""The --config flag on a command line, read before absl parses it: which file it names, and
for a ``--config.KEY=VALUE`` that names no key of that file's config, which key and what exists
there (ml_collections says it with an AttributeError or KeyError of its own)."""

from jaxpcam.config.files import load_config_file
from jaxpcam.core.errors import UserError


def config_argument(argv: list[str]) -> str | None:
    """The value of --config in argv (absl has not parsed it yet), or None."""
    for i, arg in enumerate(argv):
        for prefix in ("--config=", "-config="):
            if arg.startswith(prefix):
                return arg[len(prefix) :]
        if arg in ("--config", "-config") and i + 1 < len(argv):
            return argv[i + 1]
    return None


def unknown_key_message(argv: list[str]) -> str | None:
    """For --config.a.b=v naming no key of the loaded config: which key, and what exists there."""
    spec = config_argument(argv)
    try:
        config = None if spec is None else load_config_file(spec)
    except UserError:
        return None
    if config is None:
        return None
    for arg in argv:
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
