"""Evaluate one checkpoint on one split: predictions, metrics next to a majority baseline, the
decision threshold (chosen on valid only), slices, plots and error galleries, written under
``RUN/eval/<split>/`` (``RUN/eval/<split>_tta/`` with TTA; eval_dir.py) and to TensorBoard.
"""

import dataclasses
import shutil
import time
from pathlib import Path

import numpy as np

from jaxpcam.core.errors import UserError
from jaxpcam.core.files import json_ready, write_json_atomic
from jaxpcam.core.reporting import MetricWriter, log
from jaxpcam.data import pipeline as pipeline_lib
from jaxpcam.data.stats import image_features
from jaxpcam.evaluation import extended_results, plots
from jaxpcam.evaluation.data import (
    data_dir_for,
    data_record,
    open_eval_data,
    open_eval_split,
    warn_if_other_data,
    warn_if_threshold_on_other_data,
)
from jaxpcam.evaluation.loading import LoadedRun, batched_probs, check_finite, load_run, tta_words
from jaxpcam.evaluation.predictions_csv import write_predictions_csv
from jaxpcam.evaluation.scores import combined_scores, probabilities, view_scores_fn
from jaxpcam.evaluation.slices import IntensitySlicing, apply_slice_function, load_slice_function, write_slices_csv
from jaxpcam.evaluation.slides import read_meta
from jaxpcam.evaluation.split_predictions import Predictions, patch_report, split_slices
from jaxpcam.evaluation.thresholds import choose_threshold
from jaxpcam.run import eval_dir, outputs


@dataclasses.dataclass(frozen=True)
class EvalOptions:
    split: str = "valid"
    checkpoint: str = "best"
    threshold_rule: str = "f2"
    target_recall: float = 0.9
    slicing: IntensitySlicing = dataclasses.field(default_factory=IntensitySlicing)
    slice_functions: tuple[str, ...] = ()
    gallery_size: int = 16
    batch_size: int | None = None
    data_dir: str | None = None
    tta: bool = False  # mean probability over the 8 flips/rotations of each image


def predict_split(run: LoadedRun, split, options: EvalOptions) -> Predictions:
    """One pass over ``split`` in file order: per-view scores and probabilities (T = 1), and the
    slicing features and the slides (the split's _meta.csv) on the side."""
    batch_size = pipeline_lib.eval_batch_size(options.batch_size or run.config.data.eval_batch_size, len(split))
    functions = {spec: load_slice_function(spec) for spec in options.slice_functions}
    scores, brightness, masks = [], [], {spec: [] for spec in functions}
    predict = view_scores_fn(run, options.tta)
    start = time.perf_counter()
    for batch in pipeline_lib.eval_dataset(split, batch_size=batch_size):
        images = batch["image"][batch["mask"]]
        scores.append(next(batched_probs(predict, [batch["image"]], batch_size))[: len(images)])
        brightness.append(image_features(images)["brightness"])
        for spec, function in functions.items():
            masks[spec].append(apply_slice_function(function, spec, images))
    seconds = time.perf_counter() - start
    tta = " with TTA (8 flips/rotations each)" if options.tta else ""
    log(f"predicted {len(split)} images{tta} in {seconds:.1f} s ({len(split) / max(seconds, 1e-9):.0f} img/s)")
    names = {spec: spec.rpartition(":")[2] for spec in functions}
    labels, view_scores = np.asarray(split.labels, np.int64), np.concatenate(scores)
    return Predictions(
        run.task,
        labels,
        check_finite(run, probabilities(run.task, combined_scores(run.task, view_scores))),
        np.concatenate(brightness),
        {names[spec]: np.concatenate(m) for spec, m in masks.items()},
        view_scores,
        slide_meta=read_meta(split, labels) if run.task.binary else None,
    ).at_temperature(1.0)


def _threshold_for(run: LoadedRun, options: EvalOptions, valid: Predictions | None, valid_data: dict | None) -> dict:
    """The threshold stored for this checkpoint, rule and TTA setting, else one chosen on
    ``valid`` (computed here when evaluating another split) with this TTA setting and stored in
    that setting's own file, for predict and later evaluations; the other setting's stays."""
    try:
        found = eval_dir.find_threshold(run.workdir, options.tta, run.step)
        path, stored = found if found else (run.threshold_path(options.tta), None)
    except eval_dir.DamagedRecord as err:
        log(f"{err.path} is damaged ({err.reason}): choosing the decision threshold again")
        stored = None
    wanted_target = options.target_recall if options.threshold_rule == "recall" else None
    same_rule = stored and stored["rule"] == options.threshold_rule and stored["target_recall"] == wanted_target
    if same_rule and not valid:
        log(f"decision threshold {stored['value']:.4f} ({stored['rule']}, {tta_words(options.tta)}, chosen on valid "
            f"at step {run.step}) from {path}")  # fmt: skip
        warn_if_threshold_on_other_data(run.workdir, path, stored, options.tta)
        return stored
    if valid is None:
        log(f"choosing the decision threshold on the valid split first, {tta_words(options.tta)}")
        split, files = open_eval_data(run.config, "valid", options.data_dir)
        valid, valid_data = predict_split(run, split, options), data_record(files)
    temperature = extended_results.fit_on_valid(valid)  # the threshold is chosen on the probabilities it gives
    at_t = valid.at_temperature(temperature["value"]) if temperature else valid
    chosen = choose_threshold(valid.labels, at_t.probs, options.threshold_rule, options.target_recall)
    record = {**chosen.to_dict(), "chosen_on": "valid", "checkpoint_step": run.step, "tta": options.tta}
    record["temperature"] = temperature
    record["data"] = valid_data  # the valid files it was chosen on (warn_if_threshold_on_other_data)
    path = run.threshold_path(options.tta)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, record)  # this checkpoint's, which no other checkpoint's evaluation replaces
    write_json_atomic(eval_dir.threshold_path(run.workdir, options.tta), record)  # the latest chosen
    log(f"decision threshold {chosen.value:.4f} by {chosen.rule} on valid {tta_words(options.tta)} (precision "
        f"{chosen.precision:.3f}, recall {chosen.recall:.3f}, F2 {chosen.f2:.3f}); stored in {path}")  # fmt: skip
    return record


def _gallery_indices(preds: Predictions, threshold: float | None, size: int) -> dict[str, np.ndarray]:
    """The most confident mistakes: false negatives with the lowest P(positive), false
    positives with the highest (multi-class: wrong predictions with the highest probability)."""
    if preds.task.binary:
        called = preds.probs >= threshold
        fn = np.flatnonzero((preds.labels == 1) & ~called)
        fp = np.flatnonzero((preds.labels == 0) & called)
        return {
            "false_negatives": fn[np.argsort(preds.probs[fn], kind="stable")][:size],
            "false_positives": fp[np.argsort(-preds.probs[fp], kind="stable")][:size],
        }
    predicted = preds.probs.argmax(axis=1)
    wrong = np.flatnonzero(predicted != preds.labels)
    confidence = preds.probs[wrong, predicted[wrong]]
    return {"mistakes": wrong[np.argsort(-confidence, kind="stable")][:size]}


def _gallery_title(name: str, class_names: list[str]) -> str:
    """'false negatives (tumour called no tumour)': the task's words next to the metric's."""
    called = {"false_negatives": (1, 0), "false_positives": (0, 1)}.get(name)
    words = name.replace("_", " ")
    return f"{words} ({class_names[called[0]]} called {class_names[called[1]]})" if called else words


def _caption(preds: Predictions, i: int) -> str:
    if preds.task.binary:
        return f"#{i} p={preds.probs[i]:.3f}"
    names = preds.task.class_names
    return f"#{i} {names[preds.labels[i]]}->{names[preds.probs[i].argmax()]} p={preds.probs[i].max():.2f}"


def _pictures(out: Path, split, preds: Predictions, report: dict, threshold: dict | None, cuts, galleries) -> dict:
    """Writes every PNG; returns them as arrays for TensorBoard."""
    images = {}
    model = report["model"]
    names = list(preds.task.class_names)
    if preds.task.binary:
        chosen = {"threshold": threshold["value"], "precision": model["precision"], "recall": model["recall"]}
        if np.isfinite(model["roc_auc"]):
            images["roc"] = plots.roc_curve(preds.labels, preds.probs, out / "roc.png", model["roc_auc"])
            images["pr"] = plots.pr_curve(preds.labels, preds.probs, out / "pr.png", model["pr_auc"], chosen)
        images["scores"] = plots.score_histograms(
            preds.labels, preds.probs, threshold["value"], names, out / "scores.png"
        )
        title = f"confusion at threshold {threshold['value']:.4f}"
    else:
        title = "confusion (argmax)"
    images["confusion"] = plots.confusion_matrix(model["confusion_matrix"], names, out / "confusion.png", title)
    images["slice_feature"] = plots.feature_histogram(
        preds.brightness, cuts, out / "slice_feature.png", "mean image intensity (0..255)"
    )
    for name, indices in galleries.items():
        tiles = split.read(indices) if len(indices) else np.zeros((0, 1, 1, 1), np.uint8)
        captions = [_caption(preds, int(i)) for i in indices]
        title = _gallery_title(name, names) + (": most confident first" if len(indices) else "")
        images[name] = plots.gallery(tiles, captions, out / f"{name}.png", title)
    return images


def _to_tensorboard(out: Path, tag: str, step: int, preds: Predictions, report: dict, images: dict) -> None:
    with MetricWriter(out) as writer:
        scalars = {f"{tag}/{k}": v for k, v in report["model"].items() if isinstance(v, float) and np.isfinite(v)}
        writer.write_scalars(step, scalars)
        if preds.task.binary and len(np.unique(preds.labels)) == 2:
            writer.write_pr_curve(step, f"{tag}/pr_curve", preds.labels, preds.probs)
        writer.write_images(step, {f"{tag}/{name}": image for name, image in images.items()})


def evaluate_run(workdir: Path, options: EvalOptions) -> dict:
    """Evaluates ``workdir``'s checkpoint on ``options.split``; returns what metrics.json holds."""
    run = load_run(workdir, options.checkpoint)
    options = dataclasses.replace(options, data_dir=data_dir_for(workdir, run.config, options.data_dir))
    with outputs.writers_lock(workdir / eval_dir.EVAL_DIR):
        eval_dir.adopt_older_tta_files(workdir)
    model = f"{run.config.model.name}{run.weights_note}"
    log(f"evaluating {workdir} checkpoint step {run.step} ({model}) on {options.split}")
    split, files = open_eval_data(run.config, options.split, options.data_dir, doing="evaluating on")
    data = data_record(files)
    warn_if_other_data(workdir, data)
    preds = predict_split(run, split, options)
    binary = run.task.binary
    threshold = None
    if binary:
        on_valid = options.split == "valid"
        threshold = _threshold_for(run, options, preds if on_valid else None, data if on_valid else None)
        where = "" if on_valid else str(run.threshold_path(options.tta))
        temperature = extended_results.stored_temperature(threshold, where)
        preds = preds.at_temperature(temperature["value"]) if temperature else preds  # decisions as they were
    if options.split == "valid":
        reference = preds.labels
    else:
        reference = np.asarray(open_eval_split(run.config, "valid", options.data_dir).labels, np.int64)
    report = patch_report(preds, reference, threshold)
    slices, cuts = split_slices(preds, options.slicing, threshold["value"] if binary else None)
    result = {
        "workdir": str(workdir),
        "split": options.split,
        "checkpoint_step": run.step,
        "tta": options.tta,
        "threshold": threshold,
        "data": data,  # the files evaluated (--data_dir may name others than the run's)
        "class_names": list(run.task.class_names),  # label i is class_names[i], also in the confusion matrix
        **report,
        "slices": slices,
        "slice_cuts": cuts,
        **extended_results.sections(preds, threshold),  # calibration, uncertainty, slide_level
        "baseline_note": "majority baseline: always the class frequencies of the valid split (predicts its majority)",
    }
    _write_results(workdir, options, split, preds, result)
    return result


def _write_results(workdir: Path, options: EvalOptions, split, preds, result: dict) -> None:
    """eval/<split>[_tta]/: written whole into a folder of its own, then swapped in for the earlier
    one (run/outputs.py: a concurrent evaluation never shares its temporary names)."""
    threshold = result["threshold"]
    final = eval_dir.results_dir(workdir, options.split, options.tta)
    partial = None
    try:
        partial = outputs.partial_folder(final)
        write_predictions_csv(
            partial / "predictions.csv",
            preds.task,
            [str(i) for i in range(len(preds.labels))],
            preds.probs,
            threshold["value"] if preds.task.binary else None,
            preds.labels,
            id_column="index",
            uncertainty=preds.uncertainty,
        )
        write_json_atomic(partial / "metrics.json", json_ready(result))
        write_slices_csv(partial / "slices.csv", result["slices"])
        galleries = _gallery_indices(preds, threshold["value"] if preds.task.binary else None, options.gallery_size)
        images = _pictures(partial, split, preds, result, threshold, result["slice_cuts"], galleries)
        images |= extended_results.write_files(partial, preds, result)
        _to_tensorboard(partial, f"eval_{final.name}", result["checkpoint_step"], preds, result, images)
        outputs.swap_in(partial, final, "jaxpcam.evaluate", legacy=eval_dir.written_by_evaluation)
    except OSError as err:  # e.g. a full disk: the earlier results stay as they were
        reason = err.strerror or str(err)
        raise UserError(
            f"cannot write the evaluation into {final.parent}: {reason}; earlier results there are intact"
        ) from None
    finally:  # also when a signal stops it midway: no half-written folder stays behind
        if partial is not None:
            shutil.rmtree(partial, ignore_errors=True)
