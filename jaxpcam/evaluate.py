"""``python -m jaxpcam.evaluate --workdir RUN [--split valid|test] [--checkpoint best|latest|STEP] [--tta]``

Evaluates a run's checkpoint (model, config and normalization come from the checkpoint alone)
and writes predictions, metrics, the decision threshold, slices, plots and error galleries to
``RUN/eval/<split>/``, or with ``--tta`` to ``RUN/eval/<split>_tta/`` (see the README's
"Evaluation" section).
"""

import argparse
import sys
from pathlib import Path

from jaxpcam.cli import positive_int, run_command
from jaxpcam.core.metrics import confusion_cells, show
from jaxpcam.core.runtime import prepare_process
from jaxpcam.evaluation.slices import IntensitySlicing
from jaxpcam.evaluation.thresholds import RULES
from jaxpcam.run.eval_dir import results_dir

_SHOWN = ("accuracy", "precision", "recall", "f1", "f2", "balanced_accuracy", "roc_auc", "pr_auc", "log_loss", "brier")
_SHOWN_MULTI = ("accuracy", "macro_precision", "macro_recall", "macro_f1", "balanced_accuracy", "log_loss")


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m jaxpcam.evaluate", description=__doc__.split("\n\n")[1])
    p.add_argument("--workdir", required=True, type=Path, help="the run directory (holds checkpoints/)")
    p.add_argument("--split", default="valid", choices=("valid", "test", "train"))
    p.add_argument("--checkpoint", default="best", help="best (default), latest, or a step number")
    p.add_argument("--threshold_rule", default="f2", choices=RULES,
                   help="f2: maximise F2 on valid; recall: the highest threshold reaching --target_recall")  # fmt: skip
    p.add_argument("--target_recall", type=float, default=0.9)
    p.add_argument("--dark_quantile", type=float, default=0.1, help="dark slice: the darkest fraction of the split")
    p.add_argument("--dark_below", type=float, default=None, help="dark slice: mean intensity below this instead")
    p.add_argument("--bright_above", type=float, default=220.0, help="bright slice: mean intensity above this")
    p.add_argument("--slice", action="append", default=[], metavar="MODULE:FUNCTION",
                   help="extra slice: f(uint8 batch (B,H,W,C)) -> (B,) booleans; repeatable")  # fmt: skip
    p.add_argument("--gallery_size", type=int, default=16)
    p.add_argument("--batch_size", type=positive_int, default=None, help="default: the run's data.eval_batch_size")
    p.add_argument("--data_dir", default=None, help="where the run's data lives on this machine, if not where it was")
    p.add_argument("--tta", action="store_true",
                   help="test-time augmentation: average the probabilities over the 8 flips/rotations of each "
                   "image; the threshold is chosen on valid with the same setting and kept apart from the one without "
                   "(eval/threshold_tta.json), results go to eval/<split>_tta/")  # fmt: skip
    args = p.parse_args(argv)
    if not 0 < args.dark_quantile < 1:
        p.error("--dark_quantile must be in (0, 1)")
    if args.gallery_size < 0 or (args.batch_size is not None and args.batch_size < 1):
        p.error("--gallery_size must be >= 0 and --batch_size >= 1")
    return args


def confusion_lines(matrix, class_names: list[str], title: str) -> list[str]:
    """The confusion matrix as text, in the words and numbers of confusion.png."""
    rows = [[f"{count} ({share})" for count, share in row] for row in confusion_cells(matrix)]
    width = 2 + max(len(text) for text in [*class_names, *(cell for row in rows for cell in row)])
    lines = [f"\n  {title}: rows true class, columns predicted; count and share of the true class"]
    lines.append(f"  {'':18}" + "".join(f"{name:>{width}}" for name in class_names))
    for name, row in zip(class_names, rows, strict=True):
        lines.append(f"  {name[:18]:18}" + "".join(f"{cell:>{width}}" for cell in row))
    return lines


def print_summary(result: dict) -> None:
    binary = "model_at_0.5" in result
    keys = _SHOWN if binary else _SHOWN_MULTI
    columns = ("model", "model_at_0.5", "majority_baseline") if binary else ("model", "majority_baseline")
    names = {"model": "model", "model_at_0.5": "model @0.5", "majority_baseline": "majority baseline"}
    if binary:
        names["model"] = f"model @{result['threshold']['value']:.4f}"
    tta = ", TTA: mean over 8 flips/rotations" if result.get("tta") else ""
    count = result["model"]["count"]
    print(f"\n{result['split']} split, checkpoint step {result['checkpoint_step']} ({count} images{tta})")
    print(f"  {'metric':18}" + "".join(f"{names[c]:>20}" for c in columns))
    for key in keys:
        print(f"  {key:18}" + "".join(f"{show(result[c][key]):>20}" for c in columns))
    if binary:
        t = result["threshold"]
        rule = "max F2" if t["rule"] == "f2" else f"recall >= {t['target_recall']}"
        print(f"  threshold {t['value']:.4f} chosen on valid by {rule}")
    title = f"confusion at threshold {result['threshold']['value']:.4f}" if binary else "confusion (argmax)"
    print("\n".join(confusion_lines(result["model"]["confusion_matrix"], result["class_names"], title)))
    print(
        "\n  slice" + " " * 19 + "".join(f"{k:>11}" for k in ("count", "positives", "accuracy", "recall", "f2", "auc"))
    )
    for row in result["slices"]:
        cells = [row.get(k) for k in ("count", "positives", "accuracy", "recall", "f2", "roc_auc")]
        print(f"  {row['slice'][:22]:22}" + "".join(f"{show(v, 3) if v is not None else '-':>11}" for v in cells))
    folder = results_dir(Path(result["workdir"]), result["split"], result["tta"])
    print(f"\nWrote {folder}/ (metrics.json, predictions.csv, PNGs)")


def main(argv=None) -> int:
    args = parse_args(argv)

    def command():
        from jaxpcam.evaluation.evaluate import EvalOptions, evaluate_run  # jax is slow to import

        options = EvalOptions(
            split=args.split,
            checkpoint=args.checkpoint,
            threshold_rule=args.threshold_rule,
            target_recall=args.target_recall,
            slicing=IntensitySlicing(args.dark_quantile, args.dark_below, args.bright_above),
            slice_functions=tuple(args.slice),
            gallery_size=args.gallery_size,
            batch_size=args.batch_size,
            data_dir=args.data_dir,
            tta=args.tta,
        )
        print_summary(evaluate_run(args.workdir, options))

    return run_command(command)


if __name__ == "__main__":
    prepare_process(restart=False)
    sys.exit(main())
