"""What each config key is, in one place: which keys a resumed run may change, which name a
place whose files decide, which a report ignores when it groups runs; and a config of any age
compared in today's shape (config/migrate.py fills the keys an old config.json lacks).

Resume (training/resume.py), the sweep's point status, the report's groups and evaluation all
ask this module; none keeps a list of keys of its own."""

import enum

from jaxpcam.config.migrate import with_defaults


class KeyKind(enum.Enum):
    RESULT = "changes what a run learns"  # the default: a resume refuses a change
    NEUTRAL = "how a run is carried out"  # logging, checkpoints kept, data loading
    LENGTH = "how long a run trains"  # more epochs continue a run; fewer leave it finished
    LABEL = "a name"
    SEED = "the seed"  # a report averages over it; a resume refuses a change
    DATA_PATH = "a place, judged by the files it names"  # may move with its files (run/data_identity.py)
    AUDIT_PATH = "a place, judged by the images its manifest keeps"


_KINDS = {
    "training.log_every_steps": KeyKind.NEUTRAL,
    "training.steps_per_dispatch": KeyKind.NEUTRAL,
    "data.num_workers": KeyKind.NEUTRAL,
    "data.prefetch_batches": KeyKind.NEUTRAL,
    "data.in_memory": KeyKind.NEUTRAL,
    "data.placement": KeyKind.NEUTRAL,
    "data.eval_batch_size": KeyKind.NEUTRAL,
    "checkpoint.keep": KeyKind.NEUTRAL,
    "checkpoint.every_steps": KeyKind.NEUTRAL,
    "training.epochs": KeyKind.LENGTH,
    "training.early_stopping_patience": KeyKind.LENGTH,  # a higher patience lets a run that stopped train on
    "experiment_name": KeyKind.LABEL,
    "seed": KeyKind.SEED,
    "data.dir": KeyKind.DATA_PATH,
    "data.digits_file": KeyKind.DATA_PATH,
    "data.audit_dir": KeyKind.AUDIT_PATH,
}


def kind(key: str) -> KeyKind:
    """The kind of a dotted key (``training.epochs``); keys not named here change results."""
    return _KINDS.get(key, KeyKind.RESULT)


def keys_of(*kinds: KeyKind) -> frozenset[str]:
    return frozenset(k for k, v in _KINDS.items() if v in kinds)


def resumable(key: str) -> bool:
    """Whether a run may resume with this key changed, without changing its results."""
    return kind(key) in (KeyKind.NEUTRAL, KeyKind.LENGTH, KeyKind.LABEL)


def movable(key: str) -> bool:
    """Whether the key names a place that may change when what it holds is the same."""
    return kind(key) in (KeyKind.DATA_PATH, KeyKind.AUDIT_PATH)


def ignored_when_grouping(key: str) -> bool:
    """Whether runs that differ in this key still belong to one group of a report."""
    return kind(key) in (KeyKind.NEUTRAL, KeyKind.LABEL, KeyKind.SEED)


# The keys in which members of one vectorized group (training/members.py) may differ: they are
# per member inside one compiled step (its init and streams; the rate in its optimizer state).
MEMBER_KEYS = ("seed", "training.learning_rate")


def member_group_key(config: dict) -> tuple:
    """Equal for configs that may train as members of one group: the same in every other key."""
    return tuple(sorted((k, repr(v)) for k, v in flat_config(config).items() if k not in MEMBER_KEYS))


DATA_PATH_KEYS = tuple(sorted(keys_of(KeyKind.DATA_PATH)))
PATH_KEYS = tuple(sorted(keys_of(KeyKind.DATA_PATH, KeyKind.AUDIT_PATH)))


def flat_config(config: dict, prefix: str = "") -> dict:
    """A config.json config as {dotted key: value}, the keys ``--config.x=y`` names; lists
    (JSON's tuples) become tuples, so values compare and hash."""
    out = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(flat_config(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = tuple(value) if isinstance(value, list) else value
    return out


def changed_keys(saved: dict, current: dict) -> dict[str, list]:
    """Every key whose value differs, resumable ones included: {key: [saved, current]}. A key
    the saved config lacks counts as having its default value."""
    a, b = flat_config(with_defaults(saved)), flat_config(current)
    return {k: [a.get(k), b.get(k)] for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)}


def result_changes(saved: dict, current: dict) -> dict[str, list]:
    """The changed keys that change results and are not places (judged by their files instead):
    what a resume refuses and what makes a sweep point 'other config'."""
    return {k: v for k, v in changed_keys(saved, current).items() if not resumable(k) and not movable(k)}


def moved_paths(saved: dict, current: dict) -> dict[str, list]:
    """{key: [before, now]} for the data paths that changed (a saved config lacking one: '')."""
    before, now = flat_config(saved), flat_config(current)
    return {k: [before.get(k, ""), now.get(k, "")] for k in DATA_PATH_KEYS if before.get(k, "") != now.get(k, "")}
