"""``python -m jaxpcam.export --workdir RUN [--checkpoint best|latest|STEP] [--output DIR]``

Exports a run's checkpoint as model.jaxexport (jax.export: uint8 images to probabilities, loads
with jax alone), model.onnx (when jax2onnx converts it) and model.json (input and output spec,
class names, decision threshold, training data profile, config, provenance, fingerprints) into
``RUN/export/`` (see the README's "Exporting a model" section).
"""

import argparse
import sys
from pathlib import Path

from jaxpcam.cli import run_command
from jaxpcam.core.runtime import prepare_process


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m jaxpcam.export", description=__doc__.split("\n\n")[1])
    p.add_argument("--workdir", required=True, type=Path, help="the run directory (holds checkpoints/)")
    p.add_argument("--checkpoint", default="best", help="best (default), latest, or a step number")
    p.add_argument("--output", type=Path, default=None, help="folder to write (default: RUN/export)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier export in --output")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)

    def command():
        from jaxpcam.evaluation.export import CARD_FILE, JAX_FILE, ONNX_FILE, export_run  # jax is slow to import

        output = args.output if args.output is not None else args.workdir / "export"
        card = export_run(args.workdir, args.checkpoint, output, args.overwrite)
        written = [f"{JAX_FILE} ({', '.join(card[JAX_FILE]['platforms'])})"]
        if card[ONNX_FILE]["written"]:
            written.append(f"{ONNX_FILE} (onnxruntime within {card[ONNX_FILE]['max_abs_diff_vs_jax']:.1g} of jax)")
        decision = card["decision"]
        decided = f"threshold {decision['threshold']:.4f}" if decision["threshold"] is not None else "no threshold"
        decided = "argmax" if decision.get("rule") == "argmax" else decided
        print(f"wrote {', '.join([*written, CARD_FILE])} ({decided}; checkpoint step {card['checkpoint_step']}) "
              f"to {output}")  # fmt: skip

    return run_command(command)


if __name__ == "__main__":
    prepare_process(restart=False)
    sys.exit(main())
