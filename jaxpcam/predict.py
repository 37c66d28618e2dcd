"""``python -m jaxpcam.predict --workdir RUN --input FILE_OR_FOLDER --output preds.csv [--overwrite] [--tta]``

Probabilities and decisions for new patches with the run's stored normalization and decision
threshold; warns when the input's intensity statistics drift from the training data's. An
existing output file is replaced only with --overwrite, and written whole or not at all.
"""

import argparse
import os
import sys
from pathlib import Path

from jaxpcam.cli import positive_int, run_command
from jaxpcam.core.errors import UserError
from jaxpcam.core.reporting import count, log
from jaxpcam.core.runtime import prepare_process


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m jaxpcam.predict", description=__doc__.split("\n\n")[1])
    p.add_argument("--workdir", required=True, type=Path, help="the run directory (holds checkpoints/)")
    p.add_argument("--input", required=True, type=Path, help="an .h5 with x, a .npy array, or a folder of PNG/JPEG")
    p.add_argument("--output", required=True, help="CSV to write (an existing file only with --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output file")
    p.add_argument("--checkpoint", default="best", help="best (default), latest, or a step number")
    p.add_argument("--batch_size", type=positive_int, default=None, help="default: the run's data.eval_batch_size")
    p.add_argument("--tta", action="store_true",
                   help="average the probabilities over the 8 flips/rotations of each image; needs a threshold "
                   "chosen with --tta (jaxpcam.evaluate --tta)")  # fmt: skip
    args = p.parse_args(argv)
    args.folder_meant = args.output.endswith(("/", os.sep))  # Path() drops the slash that says "a folder"
    args.output = Path(args.output)
    return args


def _exists(output: Path) -> str:
    return f"--output {output} exists: pass --overwrite to replace it, or name another file"


def _same_file(a: Path, b: Path) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)  # also a hard link
    except OSError:  # one of them does not exist
        return False


def check_not_input(output: Path, source: Path) -> None:
    """Refuses an --output that would replace the --input file or write into the --input folder
    (even with --overwrite: the images are the user's)."""
    if _same_file(output, source):
        raise UserError(f"--output {output} is the --input file: the CSV would replace the images; name another file")
    if source.is_dir() and Path(os.path.realpath(output)).is_relative_to(os.path.realpath(source)):
        raise UserError(f"--output {output} lies inside the --input folder {source}: name a file outside it")


def _check_writable(output: Path) -> None:
    """Before predicting: the folder the CSV goes to (through a link, the target's) takes new
    files; an existing device or pipe, written into as it is, takes writes."""
    target = Path(os.path.realpath(output)) if output.exists() else output
    if target.exists() and not target.is_file():
        if not os.access(target, os.W_OK):
            raise UserError(f"--output {output}: cannot write into it (permission denied)")
        return
    folder = next((p for p in target.parents if p.exists()), Path("."))
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(f"--output {output}: cannot write into the folder {folder} (permission denied)")


def check_output(output: Path, overwrite: bool, source: Path | None = None, folder_meant: bool = False) -> None:
    """Refuses an --output that could not be written (a folder, ``folder_meant``: given with a
    trailing slash, a folder it may not write into), that is the input, or that would replace a
    file unasked."""
    if source is not None:
        check_not_input(output, source)
    if output.is_dir() or folder_meant:
        what = "is a folder" if output.is_dir() else "ends in a slash (a folder)"
        raise UserError(
            f"--output {output}{os.sep if folder_meant else ''} {what}: give the path of the CSV file to write"
        )
    blocking = next((p for p in output.parents if p.exists()), Path("."))
    if not blocking.is_dir():
        raise UserError(f"--output {output}: {blocking} is a file, not a folder")
    _check_writable(output)
    if output.is_file() and not overwrite:
        raise UserError(_exists(output))


def main(argv=None) -> int:
    args = parse_args(argv)

    def command():
        check_output(
            args.output, args.overwrite, args.input, args.folder_meant
        )  # before any work: a refusal comes at once
        from jaxpcam.evaluation.loading import load_run
        from jaxpcam.evaluation.predict import open_input, predict_input, write_predictions

        run = load_run(args.workdir, args.checkpoint)
        batch_size = args.batch_size or run.config.data.eval_batch_size
        source = open_input(args.input, run.image_shape, batch_size)
        result = predict_input(run, source, batch_size, args.tta)
        if args.output.is_file():
            log(f"replacing {args.output} (--overwrite)")
        try:
            write_predictions(args.output, run, result, args.overwrite)
        except FileExistsError:  # it appeared while predicting
            raise UserError(_exists(args.output)) from None
        except OSError as err:  # a full disk, permissions changed meanwhile: name the file asked for
            reason = err.strerror or str(err)
            raise UserError(f"cannot write --output {args.output}: {reason}; nothing written there") from None
        if result.drift is None:
            print("no training intensity profile in this checkpoint (trained before jaxpcam recorded one): "
                  "drift check skipped", file=sys.stderr)  # fmt: skip
        elif result.drift.drifted:
            print(f"WARNING: {result.drift.message()}; predictions may be unreliable", file=sys.stderr)
        else:
            print(result.drift.message(), file=sys.stderr)
        decided = "" if result.threshold is None else f" at threshold {result.threshold:.4f}"
        decided += " with TTA (mean over 8 flips/rotations)" if args.tta else ""
        made_by = f"checkpoint step {run.step}{run.weights_note}"
        print(f"wrote {count(len(result.names), 'prediction')}{decided} ({made_by}) to {args.output}")

    return run_command(command)


if __name__ == "__main__":
    prepare_process(restart=False)
    sys.exit(main())
