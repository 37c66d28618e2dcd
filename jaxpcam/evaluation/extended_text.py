"""What evaluate prints of calibration, per-tile uncertainty and slide-level results (the
``calibration``, ``uncertainty`` and ``slide_level`` sections of metrics.json). Light to import:
the evaluate command prints with it."""

from jaxpcam.core.metrics import show

SLIDE_COLUMNS = ("tiles", "tumour_tiles", "max", "mean", "top5_mean", "predicted")


def calibration_lines(section: dict) -> list[str]:
    """ECE, equal-mass ECE, Brier and log-loss without and with the temperature."""
    before, t = section["uncalibrated"], section["temperature"]
    keys = ("ece", "ece_equal_mass", "brier", "log_loss")
    if t == 1.0:
        lines = ["\n  calibration (no temperature): " + ", ".join(f"{k} {show(section[k])}" for k in keys)]
        return lines + ([f"  {section['note']}"] if section.get("note") else [])
    moved = ", ".join(f"{k} {show(before[k])} -> {show(section[k])}" for k in keys)
    return [f"\n  calibration with temperature T = {t:.4f} (fitted on valid): {moved}"]


def uncertainty_lines(section: dict, binary: bool) -> list[str]:
    """AURC, and what referring the most uncertain tiles changes on the rest."""
    refer = section["refer_most_uncertain"]
    everything, kept = refer["all"], refer["kept"]
    measure = "spread over the 8 TTA views" if section["measure"] == "tta_spread" else "predictive entropy"
    lines = [f"\n  uncertainty per tile: {measure}; AURC {show(section['aurc'])} (ideal "
             f"{show(section['aurc_ideal'])} at error rate {show(section['error_rate'])})"]  # fmt: skip
    keys = ("accuracy", "sensitivity", "specificity", "f2") if binary else ("accuracy",)
    shown = ", ".join(f"{k} {show(everything[k], 3)} -> {show(kept[k], 3)}" for k in keys)
    lines.append(f"  referring the most uncertain {refer['share']:.0%} ({everything['count'] - kept['count']} "
                 f"tiles): {shown} on the {kept['count']} kept")  # fmt: skip
    return lines


def slide_lines(section: dict, shown: int = 20) -> list[str]:
    """The per-slide table (the first ``shown`` slides; slide_level.csv has all)."""
    auc = ", ".join(f"{a} {show(v)}" for a, v in section["roc_auc"].items())
    lines = [f"\n  slide level: {section['count']} slides ({section['positives']} with a tumour tile); ROC-AUC "
             f"over slides by {auc}; slide accuracy {show(section['accuracy'], 3)}"]  # fmt: skip
    if section.get("note"):
        lines.append(f"  {section['note']}")
    lines.append("  slide" + " " * 21 + "".join(f"{k:>13}" for k in SLIDE_COLUMNS))
    for row in section["slides"][:shown]:
        cells = [show(row[k], 3) if isinstance(row[k], float) else str(row[k]) for k in SLIDE_COLUMNS]
        lines.append(f"  {row['slide'][-24:]:24}" + "".join(f"{c:>13}" for c in cells))
    if section["count"] > shown:
        lines.append(f"  ... {section['count'] - shown} more slides in slide_level.csv")
    return lines


def extended_lines(result: dict) -> list[str]:
    """Every section evaluate wrote, in the order calibration, uncertainty, slides."""
    binary = "model_at_0.5" in result
    lines = calibration_lines(result["calibration"]) if result.get("calibration") else []
    lines += uncertainty_lines(result["uncertainty"], binary) if result.get("uncertainty") else []
    return lines + (slide_lines(result["slide_level"]) if result.get("slide_level") else [])
