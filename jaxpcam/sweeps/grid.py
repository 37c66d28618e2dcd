"""Sweep points: a base config plus a grid (or a list) of overrides, each point a full config.

A sweep file is a config file with one more function:

    def get_config():  # the base, as in any config file (``--config.x=y`` overrides apply to it)
    def get_sweep():   # {"training.learning_rate": [1e-3, 1e-4], "data.batch_size": [32, 64]}
                       # (every combination, first key slowest), or a list of dicts (those points)

A point's run directory is named by its values alone (``learning_rate=0.001,batch_size=32``), so
a rerun finds the same directory for the same values even if the grid around it changed.
"""

import dataclasses
import itertools
from pathlib import Path

import ml_collections

from jaxpcam.config.checks import validate as validate_config
from jaxpcam.config.files import call_file_function
from jaxpcam.core.errors import UserError


@dataclasses.dataclass(frozen=True)
class Point:
    index: int
    values: dict  # dotted config key -> value
    config: ml_collections.ConfigDict

    @property
    def name(self) -> str:
        return ",".join(f"{key.rsplit('.', 1)[-1]}={format_value(v)}" for key, v in self.values.items())

    @property
    def hparams(self) -> dict:
        """The values in TensorBoard HParams types (bool, int, float, str)."""
        return {k: v if isinstance(v, bool | int | float | str) else format_value(v) for k, v in self.values.items()}


def format_value(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return "x".join(format_value(v) for v in value)
    return str(value).replace("/", "_")


def load_sweep(path: str | Path) -> list[dict] | dict:
    """What ``get_sweep()`` in the sweep file returns."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no sweep file at {path}")
    return call_file_function(path, "get_sweep", what="--config sweep")


def expand(sweep: dict | list[dict]) -> list[dict]:
    """A grid (dict of lists) -> every combination in order; a list of dicts -> itself. Every
    point sets a value: its run directory is named by its values (none would name the sweep's own)."""
    if sweep == {} or (isinstance(sweep, list | tuple) and {} in sweep):
        raise UserError("get_sweep() gave a point with no values: every point needs at least one key (e.g. seed)")
    if isinstance(sweep, dict):
        for key, values in sweep.items():
            if not isinstance(values, list | tuple) or not values:
                raise UserError(f"sweep key {key}: expected a non-empty list of values, got {values!r}")
        keys = list(sweep)
        return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(sweep[k] for k in keys))]
    if isinstance(sweep, list | tuple) and sweep and all(isinstance(p, dict) for p in sweep):
        return [dict(p) for p in sweep]
    raise UserError("get_sweep() must return a dict of value lists (a grid) or a non-empty list of dicts")


def with_values(base: ml_collections.ConfigDict, values: dict) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict(base.to_dict())
    for key, value in values.items():
        *parents, leaf = key.split(".")
        node = config
        for part in parents:
            node = node.get(part) if isinstance(node, ml_collections.ConfigDict) else None
        if not isinstance(node, ml_collections.ConfigDict) or leaf not in node:
            raise UserError(f"sweep key {key}: not a config key")
        try:
            node[leaf] = type(node[leaf])(value) if isinstance(node[leaf], float) and isinstance(value, int) else value
        except (TypeError, ValueError) as err:
            raise UserError(f"sweep key {key}: {value!r} does not fit ({err})") from None
    return config


def points(base: ml_collections.ConfigDict, sweep: dict | list[dict]) -> list[Point]:
    """Every point, each validated, with unique run directory names."""
    result = []
    for index, values in enumerate(expand(sweep)):
        config = with_values(base, values)
        try:
            validate_config(config)
        except UserError as err:
            raise UserError(f"sweep point {index} ({values}): {err}") from None
        result.append(Point(index, values, config))
    names = [p.name for p in result]
    if len(set(names)) != len(names):
        raise UserError("two sweep points have the same values; every point must differ")
    return result
