"""Which runs a report may average: runs whose configs differ only in the seed (and in keys that
do not change what a run learns) form one group; each group gets its own mean ± std (n)."""

import dataclasses
import math

import numpy as np

from jaxpcam.config.migrate import with_defaults
from jaxpcam.run.keys import PATH_KEYS, flat_config, ignored_when_grouping

# Not compared between runs: the seed (what a group averages over), the name (a label), how a
# run was carried out (run/keys.py), and locations: data.dir/digits_file/audit_dir only as "given
# or not" ('' means the built-in sample, scikit-learn's digits, the default audit folder, a
# different experiment from any file).
NO_CONFIG = "(no config.json)"


@dataclasses.dataclass(frozen=True)
class Stat:
    mean: float
    std: float  # NaN below two values
    n: int  # the runs with a finite value


def column_stat(values) -> Stat:
    """Mean and sample std over the finite values only; n says how many there were."""
    finite = np.asarray([v for v in values if _finite(v)], np.float64)
    mean = float(finite.mean()) if len(finite) else math.nan
    return Stat(mean, float(finite.std(ddof=1)) if len(finite) > 1 else math.nan, len(finite))


def _finite(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def comparable(config: dict) -> dict:
    """The keys that tell experiments apart, flat (``training.epochs``), paths as given or not. A
    key an older config.json lacks counts as its default, as on resume (run/keys.py)."""
    flat = flat_config(with_defaults(config))
    out = {k: v for k, v in flat.items() if not ignored_when_grouping(k)}
    out.update({k: "<a path>" if flat[k] else "" for k in PATH_KEYS if k in flat})
    return out


def differing_keys(configs: list[dict]) -> list[str]:
    """Keys (in config order) whose comparable value is not the same in every config given."""
    keys = list(dict.fromkeys(k for c in configs for k in c))
    return [k for k in keys if len({repr(c.get(k)) for c in configs}) > 1]


def group_label(config: dict, keys: list[str]) -> str:
    return ", ".join(f"{k}={format_value(config.get(k))}" for k in keys) or "one config"


def format_value(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return "(" + ", ".join(map(format_value, value)) + ("," if len(value) == 1 else "") + ")"
    return "(unset)" if value is None else "''" if value == "" else str(value)


def group_configs(configs: list[dict]) -> tuple[list[str], list[str]]:
    """(each run's group label, the keys that differ between groups). Runs without config.json
    form a group of their own; labels keep the order in which groups first appear."""
    known = [comparable(c) for c in configs if c]
    keys = differing_keys(known)
    labels = [group_label(comparable(c), keys) if c else NO_CONFIG for c in configs]
    return labels, keys
