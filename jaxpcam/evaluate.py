"""``python -m jaxpcam.evaluate --workdir RUN [--split valid|test] [--checkpoint best|latest|STEP] [--tta]``

Evaluates a run's checkpoint (model, config and normalization come from the checkpoint alone)
and writes predictions with a per-tile uncertainty, metrics, the decision threshold and the
temperature fitted with it on valid, calibration (ECE, Brier, reliability diagram), the
risk-coverage curve, slide-level results (when the split has a _meta.csv naming slides),
slices, plots and error galleries to ``RUN/eval/<split>/``, or with ``--tta`` to
``RUN/eval/<split>_tta/`` (docs/evaluation-and-export.md).
"""

import sys
from pathlib import Path

from absl import flags

from jaxpcam import cli
from jaxpcam.core.runtime import prepare_process
from jaxpcam.evaluation.summary_text import summary_text
from jaxpcam.run.eval_dir import THRESHOLD_RULES

FLAGS = cli.command_flags()
_WORKDIR = flags.DEFINE_string("workdir", None, "Required: the run directory (holds checkpoints/).", flag_values=FLAGS)
_SPLIT = flags.DEFINE_enum("split", "valid", ["valid", "test", "train"], "The split to evaluate.", flag_values=FLAGS)
_CHECKPOINT = flags.DEFINE_string("checkpoint", "best", "best, latest, or a step number.", flag_values=FLAGS)
_THRESHOLD_RULE = flags.DEFINE_enum(
    "threshold_rule",
    "f2",
    THRESHOLD_RULES,
    "f2: maximise F2 on valid; recall: the highest threshold reaching --target_recall.",
    flag_values=FLAGS,
)
_TARGET_RECALL = flags.DEFINE_float(
    "target_recall", 0.9, "The recall --threshold_rule=recall reaches.", flag_values=FLAGS
)
_DARK_QUANTILE = flags.DEFINE_float(
    "dark_quantile", 0.1, "Dark slice: the darkest fraction of the split, in (0, 1).", flag_values=FLAGS
)
flags.register_validator("dark_quantile", lambda q: 0 < q < 1, "--dark_quantile must be in (0, 1)", flag_values=FLAGS)
_DARK_BELOW = flags.DEFINE_float(
    "dark_below", None, "Dark slice: mean intensity below this instead.", flag_values=FLAGS
)
_BRIGHT_ABOVE = flags.DEFINE_float("bright_above", 220.0, "Bright slice: mean intensity above this.", flag_values=FLAGS)
_SLICE = flags.DEFINE_multi_string(
    "slice", [], "Extra slice MODULE:FUNCTION, f(uint8 batch (B,H,W,C)) -> (B,) booleans", flag_values=FLAGS
)
_GALLERY_SIZE = flags.DEFINE_integer("gallery_size", 16, "Images per error gallery.", lower_bound=0, flag_values=FLAGS)
_BATCH_SIZE = cli.define_count("batch_size", "Default: the run's data.eval_batch_size.", FLAGS)
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "Where the run's data lives on this machine, if not where it was.", flag_values=FLAGS
)
_TTA = flags.DEFINE_bool(
    "tta",
    False,
    "Test-time augmentation: average the probabilities over the 8 flips/rotations "
    "of each image; the threshold is chosen on valid with the same setting and kept apart from the one without "
    "(eval/threshold_tta.json), results go to eval/<split>_tta/.",
    flag_values=FLAGS,
)


def main(argv: list[str] | None = None) -> int:
    cli.parse(argv, FLAGS, __doc__, required=("workdir",))
    return cli.run_command(_evaluate)


def _evaluate() -> None:
    # After parsing: jax and sklearn take seconds to import, --help and a bad flag answer at once;
    # inside the command, so a signal while it imports is one line too.
    from jaxpcam.evaluation.evaluate import EvalOptions, evaluate_run
    from jaxpcam.evaluation.slices import IntensitySlicing

    options = EvalOptions(
        split=_SPLIT.value,
        checkpoint=_CHECKPOINT.value,
        threshold_rule=_THRESHOLD_RULE.value,
        target_recall=_TARGET_RECALL.value,
        slicing=IntensitySlicing(_DARK_QUANTILE.value, _DARK_BELOW.value, _BRIGHT_ABOVE.value),
        slice_functions=tuple(_SLICE.value),
        gallery_size=_GALLERY_SIZE.value,
        batch_size=_BATCH_SIZE.value,
        data_dir=_DATA_DIR.value,
        tta=_TTA.value,
    )
    print(summary_text(evaluate_run(Path(_WORKDIR.value), options)))


if __name__ == "__main__":
    prepare_process(restart=False)
    sys.exit(main())
