"""``python -m jaxpcam.export --workdir RUN [--checkpoint best|latest|STEP] [--output DIR]``

Exports a run's checkpoint as model.jaxexport (jax.export: uint8 images to probabilities, loads
with jax alone), model.onnx (when jax2onnx converts it) and model.json (input and output spec,
class names, decision threshold, training data profile, config, provenance, fingerprints) into
``RUN/export/`` (see the README's "Exporting a model" section).
"""

import sys
from pathlib import Path

from absl import flags

from jaxpcam import cli
from jaxpcam.core.runtime import prepare_process

FLAGS = cli.command_flags()
_WORKDIR = flags.DEFINE_string("workdir", None, "Required: the run directory (holds checkpoints/).", flag_values=FLAGS)
_CHECKPOINT = flags.DEFINE_string("checkpoint", "best", "best, latest, or a step number.", flag_values=FLAGS)
_OUTPUT = flags.DEFINE_string("output", None, "The folder to write (default: RUN/export).", flag_values=FLAGS)
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an earlier export in --output.", flag_values=FLAGS)


def main(argv: list[str] | None = None) -> int:
    cli.parse(argv, FLAGS, __doc__, required=("workdir",))
    return cli.run_command(_export)


def _export() -> None:
    # After parsing: jax takes seconds to import, --help and a bad flag answer at once; inside the
    # command, so a signal while it imports is one line too.
    from jaxpcam.evaluation.export import export_run, export_summary

    workdir = Path(_WORKDIR.value)
    output = Path(_OUTPUT.value) if _OUTPUT.value is not None else workdir / "export"
    print(export_summary(export_run(workdir, _CHECKPOINT.value, output, _OVERWRITE.value), output))


if __name__ == "__main__":
    prepare_process(restart=False)
    sys.exit(main())
