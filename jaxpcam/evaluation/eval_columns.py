"""The report's columns from stored evaluations (RUN/eval/<split>/ and <split>_tta/): the
patch metrics of metrics.json's ``model``, and from its other sections calibration, uncertainty
and slide-level results. No jax here: the report reads it."""

from pathlib import Path

from jaxpcam.run.eval_dir import SPLITS, TTA_SUFFIX, read_evaluations

EVAL_BINARY = (
    "roc_auc", "pr_auc", "f2", "recall", "precision", "accuracy", "brier",
    "ece", "ece_uncalibrated", "temperature", "aurc", "slide_roc_auc", "slide_accuracy",
)  # fmt: skip
EVAL_MULTICLASS = ("accuracy", "macro_f1", "balanced_accuracy", "ece", "aurc")
# where a column lives in metrics.json when not in "model"
SECTION_PATHS = {
    "ece": ("calibration", "ece"),  # at the stored temperature
    "ece_uncalibrated": ("calibration", "uncalibrated", "ece"),  # at T = 1
    "temperature": ("calibration", "temperature"),
    "aurc": ("uncertainty", "aurc"),
    "slide_roc_auc": ("slide_level", "roc_auc", "max"),  # slides scored by their largest tile probability
    "slide_accuracy": ("slide_level", "accuracy"),
}


def eval_column(split: str, metric: str, tta: bool) -> str:
    """'test_roc_auc', or 'test_roc_auc_tta' for an evaluation with --tta."""
    return f"{split}_{metric}{TTA_SUFFIX if tta else ''}"


_ABSENT = object()


def _value(record: dict, key: str):
    """The column's value (None where metrics.json holds null: undefined), or _ABSENT where the
    evaluation does not have it (one from before the section, or a split without a meta CSV)."""
    value = record
    for part in SECTION_PATHS.get(key, ("model", key)):
        if not isinstance(value, dict) or part not in value:
            return _ABSENT
        value = value[part]
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def evaluation_values(path: Path, keys: tuple[str, ...]) -> dict[str, float | None]:
    """The run's evaluation results as report columns, each metric's TTA column right after its
    plain one; what an evaluation lacks is no column of that run (the report shows '-')."""
    found = read_evaluations(path)
    values = {
        eval_column(split, key, tta): _value(found[split, tta], key)
        for split in SPLITS
        for key in keys
        for tta in (False, True)
        if (split, tta) in found
    }
    return {column: value for column, value in values.items() if value is not _ABSENT}
