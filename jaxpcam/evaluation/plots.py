"""Evaluation pictures as PNG (readable without TensorBoard) and as arrays for TensorBoard.

matplotlib with the Agg backend: no display needed, works on cluster nodes.
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import PercentFormatter
from sklearn import metrics as skm

from jaxpcam.core.metrics import confusion_cells, row_shares


def _finish(fig, path: Path) -> np.ndarray:
    """Saves ``fig`` to ``path`` and returns it as an RGB array (H, W, 3) for TensorBoard."""
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    fig.canvas.draw()
    image = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return image


def roc_curve(labels, probs, path: Path, auc: float, baseline_label: str = "chance") -> np.ndarray:
    fpr, tpr, _ = skm.roc_curve(labels, probs)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(fpr, tpr, label=f"model (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], "--", color="grey", label=baseline_label)
    ax.set(xlabel="false positive rate", ylabel="true positive rate (recall)", title="ROC curve", xlim=(0, 1))
    ax.legend(loc="lower right")
    return _finish(fig, path)


def pr_curve(labels, probs, path: Path, average_precision: float, chosen: dict | None) -> np.ndarray:
    """Precision-recall with the prevalence line and, if given, the chosen operating point."""
    precision, recall, _ = skm.precision_recall_curve(labels, probs)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(recall, precision, drawstyle="steps-post", label=f"model (AP {average_precision:.3f})")
    ax.axhline(np.mean(labels), ls="--", color="grey", label="majority baseline (prevalence)")
    if chosen is not None:
        ax.plot(chosen["recall"], chosen["precision"], "o", color="red", ms=8,
                label=f"threshold {chosen['threshold']:.4f}")  # fmt: skip
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall curve", xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(loc="lower left")
    return _finish(fig, path)


def confusion_figure(matrix, class_names: list[str], title: str):
    """Rows true, columns predicted; colour is the row share (recall on the diagonal), so an
    imbalanced split does not paint the big class dark and the small one pale."""
    matrix = np.asarray(matrix)
    shares = row_shares(matrix)
    size = 1.2 * len(class_names)
    fig, ax = plt.subplots(figsize=(size + 3.5, size + 2))
    shown = ax.imshow(np.nan_to_num(shares), cmap="Blues", vmin=0.0, vmax=1.0)
    colour_bar = fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
    colour_bar.set_label("share of the true class")
    colour_bar.ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    fontsize = 10 if len(class_names) <= 8 else 7
    for i, row in enumerate(confusion_cells(matrix)):
        for j, cell in enumerate(row):
            colour = "white" if shares[i, j] > 0.5 else "black"
            ax.text(j, i, "\n".join(cell), ha="center", va="center", color=colour, fontsize=fontsize)
    ticks = range(len(class_names))
    ax.set(xticks=ticks, yticks=ticks, xticklabels=class_names, yticklabels=class_names)
    ax.set(xlabel="predicted class", ylabel="true class", title=title)
    return fig


def confusion_matrix(matrix, class_names: list[str], path: Path, title: str) -> np.ndarray:
    return _finish(confusion_figure(matrix, class_names, title), path)


def score_figure(labels, probs, threshold: float | None, class_names: list[str]):
    """Histograms of P(class 1) for the patches of each true class, named as the task names them."""
    fig, ax = plt.subplots(figsize=(6, 4))
    bins = np.linspace(0, 1, 41)
    for cls, colour in ((0, "tab:blue"), (1, "tab:red")):
        scores = probs[labels == cls]
        ax.hist(scores, bins=bins, alpha=0.6, color=colour, label=f"true class: {class_names[cls]} ({len(scores):,})")
    if threshold is not None:
        ax.axvline(threshold, color="black", ls="--", label=f"threshold {threshold:.4f}")
    ax.set(xlabel=f"P({class_names[1]})", ylabel="patches", title="Scores per true class")
    ax.legend()
    return fig


def score_histograms(labels, probs, threshold: float | None, class_names: list[str], path: Path) -> np.ndarray:
    return _finish(score_figure(labels, probs, threshold, class_names), path)


def feature_histogram(feature, cuts: dict[str, float], path: Path, xlabel: str) -> np.ndarray:
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.hist(feature, bins=50, color="tab:grey")
    for name, value in cuts.items():
        ax.axvline(value, ls="--", color="tab:orange" if name == "dark" else "tab:purple", label=f"{name} {value:.1f}")
    ax.set(xlabel=xlabel, ylabel="patches", title="Slicing feature")
    ax.legend()
    return _finish(fig, path)


def gallery(images: np.ndarray, captions: list[str], path: Path, title: str, cols: int = 8) -> np.ndarray:
    """A grid of patches with a caption under each (e.g. index and probability)."""
    rows = max(1, -(-len(images) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.8 * rows + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, caption in zip(axes.flat, images, captions, strict=False):
        ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray" if image.shape[-1] == 1 else None)
        ax.set_title(caption, fontsize=8)
    fig.suptitle(title if len(images) else f"{title}: none")
    return _finish(fig, path)


def reliability_diagram(curves: dict[str, list], path: Path, title: str) -> np.ndarray:
    """Accuracy against mean confidence per bin (calibration.reliability_bins), one line per set of
    probabilities (e.g. before and after temperature scaling); marker area grows with the count."""
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfectly calibrated")
    for (name, rows), colour in zip(curves.items(), ("tab:red", "tab:blue"), strict=False):
        counts, confidence, accuracy = (np.asarray(c, np.float64) for c in zip(*rows, strict=True))
        ax.plot(confidence, accuracy, "-", color=colour, label=name)
        ax.scatter(confidence, accuracy, s=10 + 200 * counts / counts.sum(), color=colour, alpha=0.6)
    ax.set(xlabel="confidence (probability of the predicted class)", ylabel="accuracy", title=title)
    ax.set(xlim=(0, 1.01), ylim=(0, 1.01))
    ax.legend(loc="upper left", fontsize=8)
    return _finish(fig, path)


def risk_coverage(curve: list[dict], path: Path, title: str) -> np.ndarray:
    """Accuracy, sensitivity and F2 on the most certain tiles against the share kept."""
    fig, ax = plt.subplots(figsize=(6, 4))
    coverage = [row["coverage"] for row in curve]
    for key in ("accuracy", "sensitivity", "f2"):
        if key in curve[0]:
            ax.plot(coverage, [row[key] for row in curve], "o-", ms=3, label=key)
    ax.set(xlabel="coverage (share of tiles decided, most certain first)", ylabel="on the kept tiles", title=title)
    ax.invert_xaxis()
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax.legend(loc="lower left")
    return _finish(fig, path)


def slide_map(coords: np.ndarray, probs: np.ndarray, labels: np.ndarray, path: Path, title: str) -> np.ndarray:
    """The slide's tiles at their coordinates (x right, y down), coloured by P(tumour); tiles
    labelled tumour are outlined in black."""
    fig, ax = plt.subplots(figsize=(6, 5))
    shown = ax.scatter(coords[:, 1], coords[:, 0], c=probs, cmap="viridis", vmin=0, vmax=1, marker="s", s=12)
    tumour = labels == 1
    ax.scatter(coords[tumour, 1], coords[tumour, 0], facecolors="none", edgecolors="black", marker="s", s=18,
               linewidths=0.6, label="labelled tumour")  # fmt: skip
    fig.colorbar(shown, ax=ax, label="P(tumour)")
    ax.invert_yaxis()
    ax.set(xlabel="coord_x", ylabel="coord_y", title=title, aspect="equal")
    if tumour.any():
        ax.legend(loc="upper right", fontsize=8)
    return _finish(fig, path)
