"""``python -m jaxpcam.predict --workdir RUN --input FILE_OR_FOLDER --output preds.csv [--overwrite] [--tta]``

Probabilities, decisions and a per-image uncertainty for new patches with the run's stored
normalization, decision threshold and temperature (0.5 and uncalibrated when evaluate has chosen
no threshold for the setting, with or without --tta, it predicts with); warns when the input's
intensity statistics drift from the training data's. An existing output file is replaced only
with --overwrite, and written whole or not at all.
"""

import sys
from pathlib import Path

from absl import flags

from jaxpcam import cli
from jaxpcam.core.reporting import count
from jaxpcam.core.runtime import prepare_process
from jaxpcam.evaluation.predict_output import check_output

FLAGS = cli.command_flags()
_WORKDIR = flags.DEFINE_string("workdir", None, "Required: the run directory (holds checkpoints/).", flag_values=FLAGS)
_INPUT = flags.DEFINE_string(
    "input", None, "Required: an .h5 with x, a .npy array, or a folder of PNG/JPEG.", flag_values=FLAGS
)
_OUTPUT = flags.DEFINE_string(
    "output", None, "Required: the CSV to write (an existing file only with --overwrite).", flag_values=FLAGS
)
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing --output file.", flag_values=FLAGS)
_CHECKPOINT = flags.DEFINE_string("checkpoint", "best", "best, latest, or a step number.", flag_values=FLAGS)
_BATCH_SIZE = cli.define_count("batch_size", "Default: the run's data.eval_batch_size.", FLAGS)
_TTA = flags.DEFINE_bool(
    "tta",
    False,
    "Average the probabilities over the 8 flips/rotations of each image; decides at the "
    "threshold chosen with --tta (jaxpcam.evaluate --tta), else at 0.5.",
    flag_values=FLAGS,
)


def _predict() -> None:
    source = Path(_INPUT.value)
    output = check_output(_OUTPUT.value, _OVERWRITE.value, source)  # before loading: a refusal comes at once
    # Only now: jax takes seconds to import, --help and a bad flag or --output answer at once.
    from jaxpcam.evaluation.predict import drift_line, predict_file

    run, result = predict_file(
        Path(_WORKDIR.value), _CHECKPOINT.value, source, output, _BATCH_SIZE.value, _TTA.value, _OVERWRITE.value
    )
    print(drift_line(result), file=sys.stderr)
    decided = "" if result.threshold is None else f" at threshold {result.threshold:.4f}"
    decided += f" (temperature {result.temperature:.4f})" if result.temperature != 1.0 else ""
    decided += " with TTA (mean over 8 flips/rotations)" if _TTA.value else ""
    print(
        f"wrote {count(len(result.names), 'prediction')}{decided} (checkpoint step {run.step}{run.weights_note}) "
        f"to {output}"
    )


def main(argv: list[str] | None = None) -> int:
    cli.parse(argv, FLAGS, __doc__, required=("workdir", "input", "output"))
    return cli.run_command(_predict)


if __name__ == "__main__":
    prepare_process(restart=False)
    sys.exit(main())
