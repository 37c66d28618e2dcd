"""Inference on new patches with a run's stored normalization, decision threshold and the
temperature stored with it, plus a drift check of the input against the training data's
intensity profile.

Inputs: an HDF5 file with ``x`` (N, H, W, C) (uint8, or float 0..255 as in course copies) or the
digits task's ``images``, a ``.npy`` array (N, H, W, C) or one image (H, W, C) ((N, H, W) and
(H, W) for a one-channel model), or a folder of PNG/JPEG images. Pixel values: data/pixels.py.
"""

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np

from jaxpcam.core.errors import UserError
from jaxpcam.core.files import write_output_text
from jaxpcam.core.reporting import log
from jaxpcam.data.pipeline import eval_batch_size
from jaxpcam.data.pixels import checked_uint8
from jaxpcam.data.stats import image_features
from jaxpcam.evaluation.calibration import stored_temperature
from jaxpcam.evaluation.data import warn_if_threshold_on_other_data
from jaxpcam.evaluation.drift import DriftCheck, check_drift
from jaxpcam.evaluation.loading import LoadedRun, batched_probs, check_finite, load_run, tta_words
from jaxpcam.evaluation.predict_output import exists_message
from jaxpcam.evaluation.predictions_csv import predictions_csv
from jaxpcam.evaluation.scores import combined_scores, probabilities, uncertainty, view_scores_fn
from jaxpcam.run.eval_dir import find_threshold

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
IMAGE_KEYS = ("x", "images")


@dataclasses.dataclass(frozen=True)
class Input:
    names: list[str]  # one per image: its index, or its file name for a folder
    batches: object  # () -> iterator of uint8 (B, H, W, C) batches
    batch_size: int  # B: never beyond the input (pipeline.eval_batch_size)


def _check_shape(shape: tuple, expected: tuple, source: Path) -> None:
    if tuple(shape) != tuple(expected):
        raise UserError(f"{source}: images are {tuple(shape)}, the model takes {tuple(expected)}")


def _array_input(array, source: Path, expected: tuple, batch_size: int) -> Input:
    """(N, H, W, C) images, one (H, W, C) image; for a one-channel model also (N, H, W) and one
    (H, W) image, as the digits task stores them."""
    channel = expected[-1] == 1 and tuple(array.shape[-(len(expected) - 1) :]) == tuple(expected[:-1])
    if array.ndim == len(expected) - (1 if channel else 0):
        array = np.asarray(array)[None]
    shape = (*array.shape[1:], 1) if channel else array.shape[1:]
    _check_shape(shape, expected, source)
    if array.dtype.kind not in "uif":
        raise UserError(f"{source}: expected numeric pixels, got dtype {array.dtype}")
    if len(array) == 0:
        raise UserError(f"{source} holds 0 images: nothing to predict")
    batch_size = eval_batch_size(batch_size, len(array))

    def batches() -> Iterator[np.ndarray]:
        for start in range(0, len(array), batch_size):
            block = np.asarray(array[start : start + batch_size])
            yield checked_uint8(block[..., None] if channel else block, start, source)

    return Input([str(i) for i in range(len(array))], batches, batch_size)


def _folder_input(folder: Path, expected: tuple, batch_size: int) -> Input:
    from PIL import Image, UnidentifiedImageError

    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UserError(f"{folder} holds no {'/'.join(IMAGE_SUFFIXES)} images")
    mode = "L" if expected[-1] == 1 else "RGB"
    batch_size = eval_batch_size(batch_size, len(files))

    def load(path: Path) -> np.ndarray:
        try:
            with Image.open(path) as image:
                pixels = np.asarray(image.convert(mode), np.uint8)
        except (OSError, UnidentifiedImageError) as err:
            raise UserError(f"cannot read image {path}: {err}") from None
        pixels = pixels[..., None] if mode == "L" else pixels
        _check_shape(pixels.shape, expected, path)
        return pixels

    def batches() -> Iterator[np.ndarray]:
        for start in range(0, len(files), batch_size):
            yield np.stack([load(p) for p in files[start : start + batch_size]])

    return Input([p.name for p in files], batches, batch_size)


def open_input(path: Path, expected: tuple, batch_size: int) -> Input:
    if path.is_dir():
        return _folder_input(path, expected, batch_size)
    if not path.is_file():
        raise UserError(f"--input {path} does not exist")
    if path.suffix == ".npy":
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except ValueError as err:  # numpy's own text suggests allow_pickle=True, which would run what the file holds
            pickled = "allow_pickle" in str(err) or "Python objects" in str(err)
            why = "it holds Python objects, not an array of numbers" if pickled else str(err)
            raise UserError(f"cannot read {path} as a .npy array of images: {why}") from None
        return _array_input(array, path, expected, batch_size)
    try:
        handle = h5py.File(path, "r")
    except OSError as err:
        raise UserError(f"cannot read {path} as HDF5 (or give a .npy file or a folder of PNG/JPEG): {err}") from None
    key = next((k for k in IMAGE_KEYS if k in handle), None)  # PCAM's x, or the digits task's images
    if key is None:
        raise UserError(f"{path} has no dataset {' or '.join(map(repr, IMAGE_KEYS))} (found: {sorted(handle.keys())})")
    return _array_input(handle[key], path, expected, batch_size)


@dataclasses.dataclass(frozen=True)
class PredictResult:
    names: list[str]
    probs: np.ndarray
    threshold: float | None
    drift: DriftCheck | None
    uncertainty: np.ndarray | None = None  # per image (scores.uncertainty)
    temperature: float = 1.0


def _threshold(run: LoadedRun, tta: bool) -> tuple[float | None, float]:
    """(the decision threshold, the temperature stored with it) for this checkpoint and TTA
    setting. Without one for this setting (none at all, or only the other setting's, which
    belongs to other probabilities) it decides at 0.5 on uncalibrated probabilities, saying why."""
    if not run.task.binary:
        return None, 1.0
    found = find_threshold(run.workdir, tta, run.step)
    if found is not None:
        path, stored = found
        temperature = stored_temperature(stored, str(path))
        at_t = f" on probabilities at temperature T = {temperature['value']:.4f}" if temperature else ""
        log(f"decision threshold {stored['value']:.4f}{at_t}, chosen on valid {tta_words(tta)}, from {path}")
        warn_if_threshold_on_other_data(run.workdir, path, stored, tta)
        return stored["value"], temperature["value"] if temperature else 1.0
    flag = " --tta" if tta else ""
    other = run.stored_threshold(not tta) is not None
    why = (f"only one chosen {tta_words(not tta)} is stored, and it belongs to other probabilities" if other
           else "none is stored")  # fmt: skip
    log(f"deciding at 0.5 on uncalibrated probabilities: no decision threshold chosen {tta_words(tta)} for "
        f"checkpoint step {run.step} ({why}); python -m jaxpcam.evaluate --workdir {run.workdir}{flag} chooses "
        "one on valid")  # fmt: skip
    return 0.5, 1.0


def predict_input(run: LoadedRun, source: Input, batch_size: int, tta: bool = False) -> PredictResult:
    threshold, temperature = _threshold(run, tta)  # before any work: a damaged record stops it at once
    predict = view_scores_fn(run, tta)
    scores, features = [], []
    for batch in source.batches():
        scores.append(next(batched_probs(predict, [batch], batch_size)))
        features.append(image_features(batch))
    merged = {k: np.concatenate([f[k] for f in features]) for k in features[0]}
    drift = check_drift(run.data_profile, merged) if run.data_profile else None
    view_scores = np.concatenate(scores)
    probs = check_finite(run, probabilities(run.task, combined_scores(run.task, view_scores), temperature))
    values = uncertainty(run.task, view_scores, probs)[1]
    return PredictResult(source.names, probs, threshold, drift, values, temperature)


def write_predictions(path: Path, run: LoadedRun, result: PredictResult, overwrite: bool = False) -> None:
    """The CSV, whole or not at all; an existing file only replaced with ``overwrite``
    (FileExistsError otherwise, also for one that appeared while predicting)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = predictions_csv(run.task, result.names, result.probs, result.threshold, uncertainty=result.uncertainty)
    write_output_text(path, text, overwrite)


def predict_file(workdir: Path, checkpoint: str, source_path: Path, output: Path, batch_size: int | None,
                 tta: bool, overwrite: bool) -> tuple[LoadedRun, PredictResult]:  # fmt: skip
    """The predict command's work: the run's checkpoint on ``source_path``, written to ``output``
    (checked by predict_output.check_output first); a write that fails is one UserError."""
    run = load_run(workdir, checkpoint)
    source = open_input(source_path, run.image_shape, batch_size or run.config.data.eval_batch_size)
    result = predict_input(run, source, source.batch_size, tta)
    if output.is_file():
        log(f"replacing {output} (--overwrite)")
    try:
        write_predictions(output, run, result, overwrite)
    except FileExistsError:  # it appeared while predicting
        raise UserError(exists_message(output)) from None
    except OSError as err:  # a full disk, permissions changed meanwhile: name the file asked for
        reason = err.strerror or str(err)
        raise UserError(f"cannot write --output {output}: {reason}; nothing written there") from None
    return run, result


def drift_line(result: PredictResult) -> str:
    """What the drift check found, for stderr."""
    if result.drift is None:
        return (
            "no training intensity profile in this checkpoint (trained before jaxpcam recorded one): "
            "drift check skipped"
        )
    if result.drift.drifted:
        return f"WARNING: {result.drift.message()}; predictions may be unreliable"
    return result.drift.message()
