"""Calibration, per-tile uncertainty and slide-level results of one evaluation: the sections of
metrics.json (``calibration``, ``uncertainty``, ``slide_level``) and their files in the results
folder (reliability.png, risk_coverage.csv/.png, slide_level.csv, slide_maps/<slide>.png).

The temperature is fitted here, when evaluate chooses a threshold on valid, and stored inside
that threshold record (calibration.stored_temperature reads it back).
"""

from pathlib import Path

import numpy as np

from jaxpcam.core.reporting import log
from jaxpcam.evaluation import plots
from jaxpcam.evaluation.calibration import (
    calibration_section,
    confidence_and_correct,
    fit_temperature,
    reliability_bins,
    stored_temperature,
)
from jaxpcam.evaluation.scores import probabilities
from jaxpcam.evaluation.slides import safe_name, slide_section, write_slides_csv
from jaxpcam.evaluation.split_predictions import Predictions
from jaxpcam.evaluation.uncertainty import risk_coverage, write_risk_coverage_csv


def fit_on_valid(valid: Predictions) -> dict | None:
    """The temperature record fitted on ``valid`` (None with one class: nothing to fit)."""
    if len(np.unique(valid.labels)) < 2:
        return None
    fitted = fit_temperature(valid.task, valid.labels, valid.scores)
    log(f"temperature T = {fitted['value']:.4f} fitted on valid by NLL ({fitted['nll_before']:.4f} at T = 1, "
        f"{fitted['nll_after']:.4f} at T); probabilities come from logit / T, decisions stay as they were")  # fmt: skip
    return fitted


def sections(preds: Predictions, threshold: dict | None) -> dict:
    """metrics.json's calibration, uncertainty and slide_level for ``preds`` (at their temperature)."""
    task, labels = preds.task, preds.labels
    value = threshold["value"] if task.binary else None
    temperature = stored_temperature(threshold) if task.binary else None
    meta = preds.slide_meta
    return {
        "calibration": calibration_section(task, labels, preds.scores, temperature),
        "uncertainty": risk_coverage(task, labels, preds.probs, value, preds.uncertainty, preds.uncertainty_measure),
        "slide_level": slide_section(meta, labels, preds.probs, value) if meta is not None and task.binary else None,
    }


def write_files(out: Path, preds: Predictions, result: dict) -> dict[str, np.ndarray]:
    """The files of the three sections into ``out``; returns the pictures for TensorBoard."""
    task, labels = preds.task, preds.labels
    curves = {}
    for name, probs in (("without temperature", probabilities(task, preds.scores, 1.0)), ("as written", preds.probs)):
        curves[name] = reliability_bins(*confidence_and_correct(task, labels, probs))
    if preds.temperature == 1.0:
        curves = {"model (T = 1)": curves["as written"]}
    else:
        curves = {"T = 1": curves["without temperature"], f"T = {preds.temperature:.3f}": curves["as written"]}
    images = {"reliability": plots.reliability_diagram(curves, out / "reliability.png", "Reliability (15 bins)")}
    section = result["uncertainty"]
    write_risk_coverage_csv(out / "risk_coverage.csv", section)
    words = "spread over the TTA views" if section["measure"] == "tta_spread" else "predictive entropy"
    images["risk_coverage"] = plots.risk_coverage(
        section["curve"], out / "risk_coverage.png", f"Risk-coverage ({words})"
    )
    slide_level = result.get("slide_level")
    if slide_level:
        write_slides_csv(out / "slide_level.csv", slide_level)
        _slide_maps(out / "slide_maps", preds)
    return images


def _slide_maps(folder: Path, preds: Predictions) -> None:
    meta = preds.slide_meta
    if meta.coords is None:
        return
    folder.mkdir()
    for name in np.unique(meta.slides):
        mask = meta.slides == name
        title = f"{name}: P(tumour) per tile ({int(mask.sum())} tiles)"
        plots.slide_map(meta.coords[mask], preds.probs[mask], preds.labels[mask], folder / f"{safe_name(name)}.png",
                        title)  # fmt: skip
