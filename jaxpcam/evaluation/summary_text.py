"""The evaluation's summary as the evaluate command prints it: metrics beside the 0.5 cut and the
majority baseline, the threshold, the confusion matrix in confusion.png's words, the slices, then
calibration, uncertainty and slide-level results (extended_text.py)."""

from pathlib import Path

from jaxpcam.core.metrics import confusion_cells, show
from jaxpcam.evaluation.extended_text import extended_lines
from jaxpcam.run.eval_dir import results_dir

_SHOWN = ("accuracy", "precision", "recall", "f1", "f2", "balanced_accuracy", "roc_auc", "pr_auc", "log_loss", "brier")
_SHOWN_MULTI = ("accuracy", "macro_precision", "macro_recall", "macro_f1", "balanced_accuracy", "log_loss")
_SLICE_COLUMNS = ("count", "positives", "accuracy", "recall", "f2", "roc_auc")


def confusion_lines(matrix, class_names: list[str], title: str) -> list[str]:
    """The confusion matrix as text, in the words and numbers of confusion.png."""
    rows = [[f"{count} ({share})" for count, share in row] for row in confusion_cells(matrix)]
    width = 2 + max(len(text) for text in [*class_names, *(cell for row in rows for cell in row)])
    lines = [f"\n  {title}: rows true class, columns predicted; count and share of the true class"]
    lines.append(f"  {'':18}" + "".join(f"{name:>{width}}" for name in class_names))
    for name, row in zip(class_names, rows, strict=True):
        lines.append(f"  {name[:18]:18}" + "".join(f"{cell:>{width}}" for cell in row))
    return lines


def _metric_lines(result: dict, binary: bool) -> list[str]:
    keys = _SHOWN if binary else _SHOWN_MULTI
    columns = ("model", "model_at_0.5", "majority_baseline") if binary else ("model", "majority_baseline")
    names = {"model": "model", "model_at_0.5": "model @0.5", "majority_baseline": "majority baseline"}
    if binary:
        names["model"] = f"model @{result['threshold']['value']:.4f}"
    tta = ", TTA: mean over 8 flips/rotations" if result.get("tta") else ""
    count = result["model"]["count"]
    lines = [f"\n{result['split']} split, checkpoint step {result['checkpoint_step']} ({count} images{tta})"]
    lines.append(f"  {'metric':18}" + "".join(f"{names[c]:>20}" for c in columns))
    lines += [f"  {key:18}" + "".join(f"{show(result[c][key]):>20}" for c in columns) for key in keys]
    if binary:
        t = result["threshold"]
        rule = "max F2" if t["rule"] == "f2" else f"recall >= {t['target_recall']}"
        temperature = (t.get("temperature") or {}).get("value")
        at_t = f", on probabilities at temperature T = {temperature:.4f}" if temperature else ""
        lines.append(f"  threshold {t['value']:.4f} chosen on valid by {rule}{at_t}")
    return lines


def _slice_lines(slices: list[dict]) -> list[str]:
    header = ("count", "positives", "accuracy", "recall", "f2", "auc")
    lines = ["\n  slice" + " " * 19 + "".join(f"{k:>11}" for k in header)]
    for row in slices:
        cells = [row.get(k) for k in _SLICE_COLUMNS]
        lines.append(
            f"  {row['slice'][:22]:22}" + "".join(f"{show(v, 3) if v is not None else '-':>11}" for v in cells)
        )
    return lines


def summary_text(result: dict) -> str:
    """What evaluate prints for ``result`` (the metrics.json record of one split)."""
    binary = "model_at_0.5" in result
    title = f"confusion at threshold {result['threshold']['value']:.4f}" if binary else "confusion (argmax)"
    confusion = confusion_lines(result["model"]["confusion_matrix"], result["class_names"], title)
    folder = results_dir(Path(result["workdir"]), result["split"], result["tta"])
    wrote = f"\nWrote {folder}/ (metrics.json, predictions.csv, PNGs)"
    lines = [*_metric_lines(result, binary), *confusion, *_slice_lines(result["slices"]), *extended_lines(result)]
    return "\n".join([*lines, wrote])
