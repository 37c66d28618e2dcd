"""How a checkpoint is laid out, and its small items read and checked: what training (resume)
and evaluation (evaluate, predict) both need, below both."""

from pathlib import Path

import orbax.checkpoint as ocp

from jaxpcam.run import integrity

ITEMS = ("state", "schedule", "progress", "data", "config", "metrics", "data_profile", "checksums")
JSON_ITEMS = tuple(name for name in ITEMS if name not in ("state", "checksums"))  # what the checksums cover


def handler_registry() -> ocp.handlers.CheckpointHandlerRegistry:
    """Each item's handler registered by name (not only inferred from a save's or restore's
    args), so that ``metadata(step).item_metadata`` reads the state's layout without restoring
    it. Orbax adds the 'metrics' handler itself. One registry per manager: the manager adds to it."""
    handlers = {name: ocp.JsonCheckpointHandler() for name in ITEMS if name not in ("state", "metrics")}
    return ocp.handlers.create_default_handler_registry(**handlers, state=ocp.StandardCheckpointHandler())


def has_item(manager: ocp.CheckpointManager, step: int, name: str) -> bool:
    return (Path(manager.directory) / str(step) / name).is_dir()


def read_json_item(manager: ocp.CheckpointManager, step: int, name: str) -> dict | None:
    """One small item of a checkpoint (None if it has none); DamagedCheckpoint if unreadable."""
    if not has_item(manager, step, name):
        return None
    try:
        value = manager.restore(step, args=ocp.args.Composite(**{name: ocp.args.JsonRestore()}))[name]
    except Exception as err:  # a truncated or garbled file: JSONDecodeError, OSError, ...
        raise integrity.DamagedCheckpoint(f"its {name} item does not read ({type(err).__name__})") from None
    if not isinstance(value, dict):
        raise integrity.DamagedCheckpoint(f"its {name} item is not a JSON object")
    return value


def has_checksums(manager: ocp.CheckpointManager, step: int) -> bool:
    """Whether ``step`` carries checksums; DamagedCheckpoint when it was written with them (its
    data item says so) and they are gone: deleting them must not turn the checks off."""
    if has_item(manager, step, "checksums"):
        return True
    data, progress = read_json_item(manager, step, "data"), read_json_item(manager, step, "progress")
    if data is None or progress is None:  # every jaxpcam checkpoint has both
        raise integrity.DamagedCheckpoint(f"its {'data' if data is None else 'progress'} item is missing")
    if data.get("checksummed") or "history" in progress:  # written by a version that checksums
        raise integrity.DamagedCheckpoint("its checksums item is missing")
    return False


def restore_verified(manager: ocp.CheckpointManager, step: int, target) -> tuple[object, dict, bool]:
    """(state laid out like ``target``, its JSON items, whether they were verified) of ``step``,
    checked against the checksums it carries: resume, evaluate and predict all read this way.

    Raises DamagedCheckpoint when it cannot be read back as written."""
    names = [n for n in JSON_ITEMS if has_item(manager, step, n)]
    if "config" not in names:
        raise integrity.DamagedCheckpoint("it has no config item")
    verified = has_checksums(manager, step)
    args = {name: ocp.args.JsonRestore() for name in names + (["checksums"] if verified else [])}
    try:
        restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target), **args))
        items = {name: restored[name] for name in names}
        if verified:
            integrity.verify(restored["checksums"], restored["state"], items)
    except integrity.DamagedCheckpoint:
        raise
    except Exception as err:  # any failure to read back means damaged
        raise integrity.DamagedCheckpoint(integrity.describe_failure(err)) from None
    return restored["state"], items, verified


def read_verified_json_item(manager: ocp.CheckpointManager, step: int, name: str) -> dict:
    """One small item, checked against the checkpoint's checksums before anything relies on it
    (a damaged config must read as damage, not as a changed config)."""
    value = read_json_item(manager, step, name)
    if value is None:
        raise integrity.DamagedCheckpoint(f"it has no {name} item")
    if has_checksums(manager, step):
        sums = read_json_item(manager, step, "checksums")
        if integrity.json_checksum(value) != (sums.get("items") or {}).get(name):
            raise integrity.DamagedCheckpoint(f"checksum mismatch in {name}")
    return value
