"""A run's checkpoint as a model to deploy (docs/evaluation-and-export.md, "Exporting a model"):

- ``model.jaxexport``: ``jax.export`` of uint8 images (B, H, W, C), B symbolic, to the task's
  probabilities, with the parameters and the normalization inside; loads with jax alone;
- ``model.onnx``: the same function through jax2onnx, when it converts and onnxruntime gives the
  same outputs (:mod:`jaxpcam.evaluation.onnx_export`);
- ``model.json``: input and output spec, class names, the decision threshold chosen on valid and
  the temperature inside the function (``calibration``), the training data's intensity profile,
  config and provenance, and the files' SHA-256.

Both model files are run on fixed probe images before anything is written: the deserialized
``model.jaxexport`` must give what the model gives in this process.
"""

import datetime
import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxpcam.core.errors import RunFailed, UserError
from jaxpcam.core.files import json_ready
from jaxpcam.core.reporting import log
from jaxpcam.core.task import Task
from jaxpcam.data.normalization import Normalization
from jaxpcam.evaluation import onnx_export
from jaxpcam.evaluation.calibration import stored_temperature
from jaxpcam.evaluation.data import warn_if_threshold_on_other_data
from jaxpcam.evaluation.loading import LoadedRun, inference_probabilities, load_run
from jaxpcam.run import eval_dir, outputs
from jaxpcam.run.record import CONFIG_FILE, Health, read_record

FORMAT = "jaxpcam-export/1"
JAX_FILE, ONNX_FILE, CARD_FILE = "model.jaxexport", "model.onnx", "model.json"
PLATFORMS = ("cpu", "cuda", "rocm")  # lowering for the GPUs needs none; CPU alone if it fails
JAX_TOLERANCE = 1e-5  # the artifact against the model in this process (measured: equal)


def inference_function(
    apply_fn, params, normalization: Normalization, task: Task, temperature: float = 1.0
) -> Callable:
    """uint8 images (B, H, W, C) -> the task's probabilities ((B,) P(positive), or (B, C) for a
    multi-class task) from logit / ``temperature``, parameters and normalization inside: the
    function that is exported.

    The hook for test-time augmentation: an ``--tta`` option would wrap the returned function
    (the mean over the 8 dihedral transforms of the batch) before export; nothing else changes.
    """

    def probabilities(images: jax.Array) -> jax.Array:
        return inference_probabilities(apply_fn, task, params, normalization, images, temperature)

    return probabilities


def image_spec(image_shape: tuple[int, ...]) -> jax.ShapeDtypeStruct:
    (batch,) = jax.export.symbolic_shape("batch")
    return jax.ShapeDtypeStruct((batch, *image_shape), jnp.uint8)


def probe_images(image_shape: tuple[int, ...], count: int = 8) -> np.ndarray:
    """Fixed images for the checks: noise around intensities from dark to bright."""
    levels = np.linspace(30, 225, count).reshape(count, *([1] * len(image_shape)))
    noise = np.random.default_rng(0).normal(0, 40, (count, *image_shape))
    return np.clip(levels + noise, 0, 255).astype(np.uint8)


def serialize(fn: Callable, spec: jax.ShapeDtypeStruct) -> tuple[bytes, tuple[str, ...], dict]:
    """``jax.export`` of ``fn`` for the CPU, CUDA and ROCm (the CPU alone when GPU lowering fails)."""

    def export(platforms: tuple[str, ...]) -> jax.export.Exported:
        return jax.export.export(jax.jit(fn), platforms=platforms)(spec)

    try:
        exported = export(PLATFORMS)
    except Exception as gpu_err:
        try:
            exported = export(("cpu",))
        except Exception as err:
            raise RunFailed(f"jax.export failed: {onnx_export.first_line(err)}") from None
        log(f"lowering for CUDA and ROCm failed ({onnx_export.first_line(gpu_err)}); exported for the CPU only")
    try:
        blob = exported.serialize()
    except ImportError as err:  # flatbuffers, a dependency of jaxpcam, is missing
        raise UserError(f"jax.export cannot serialize: {err}") from None
    info = {"calling_convention_version": exported.calling_convention_version, "jax_version": jax.__version__}
    return blob, tuple(exported.platforms), info


def _check_artifact(blob: bytes, probe: np.ndarray, expected: np.ndarray) -> float:
    """The deserialized artifact on the probe batch and on its first image alone (another B)."""
    exported = jax.export.deserialize(blob)
    whole, first = np.asarray(exported.call(probe)), np.asarray(exported.call(probe[:1]))
    diff = float(max(np.max(np.abs(whole - expected)), np.max(np.abs(first - expected[:1]))))
    if not diff <= JAX_TOLERANCE:
        raise RunFailed(f"the exported model differs from the checkpoint's by {diff:.3g}; nothing written")
    return diff


def _calibration(run: LoadedRun) -> dict:
    """model.json's ``calibration``: the temperature stored with the threshold the export ships."""
    if not run.task.binary:
        return {"temperature": 1.0, "note": "uncalibrated: temperatures are fitted for binary tasks only"}
    stored = run.stored_threshold(tta=False)
    temperature = stored_temperature(stored, str(run.threshold_path(tta=False)))
    if temperature is None:
        why = "no threshold chosen on valid" if stored is None else "the threshold was chosen before temperatures"
        return {"temperature": 1.0, "note": f"uncalibrated: {why} (python -m jaxpcam.evaluate fits one)"}
    return {**temperature, "temperature": temperature["value"],
            "applied": "inside model.jaxexport and model.onnx: probabilities from logit / temperature"}  # fmt: skip


def _decision(run: LoadedRun) -> dict:
    if not run.task.binary:
        return {"threshold": None, "rule": "argmax", "note": "multi-class: the class with the highest probability"}
    found = eval_dir.find_threshold(run.workdir, False, run.step)  # the exported function has no TTA
    path, stored = found if found else (None, None)
    command = f"python -m jaxpcam.evaluate --workdir {run.workdir} --checkpoint {run.step}"
    if stored is None:
        if run.stored_threshold(tta=True) is not None:
            note = (f"only a threshold chosen with --tta (on valid) is stored for checkpoint {run.step}, and the "
                    f"exported model does not do TTA: run {command} (without --tta) first")  # fmt: skip
        else:
            note = f"no threshold chosen on valid for checkpoint {run.step}: run {command} first"
        log(f"WARNING: model.json gets no decision threshold ({note})")
        return {"threshold": None, "note": note}
    on_other_data = warn_if_threshold_on_other_data(run.workdir, path, stored, tta=False)
    return {
        "threshold": stored["value"],
        "rule": stored["rule"],  # f2: maximise F2 on valid; recall: highest threshold reaching target_recall
        "target_recall": stored.get("target_recall"),
        "chosen_on": stored.get("chosen_on", "valid"),
        "on_valid": {k: stored.get(k) for k in ("precision", "recall", "f2")},
        "positive_when": "probability >= threshold",
        "tta": False,  # chosen on plain probabilities, as the exported function gives them
        "chosen_on_other_data": on_other_data,  # evaluate --data_dir elsewhere
    }


def _run_record(workdir: Path) -> dict:
    record = read_record(workdir).require(missing_ok=True)
    if record.health is Health.MISSING:
        return {"provenance": None, "resumptions": None, "note": f"the run directory has no {CONFIG_FILE}"}
    return {"provenance": record.provenance, "resumptions": list(record.resumptions)}


def _specs(run: LoadedRun) -> tuple[dict, dict]:
    shape, names = run.image_shape, list(run.task.class_names)
    channels = {3: "RGB", 1: "grayscale"}.get(shape[-1], f"{shape[-1]} channels")
    inputs = {
        "name": onnx_export.INPUT_NAME,
        "dtype": "uint8",
        "shape": [None, *shape],
        "layout": "NHWC",
        "channel_order": channels,
        "value_range": [0, 255],
        "normalization": "inside the model: (x - mean) / std per channel, in pixel units",
        "normalization_mean": np.asarray(run.normalization.mean).tolist(),
        "normalization_std": np.asarray(run.normalization.std).tolist(),
    }
    if run.task.binary:
        meaning = f"P({names[1]}): the probability of class 1"
        outputs = {"shape": [None], "meaning": meaning}
    else:
        outputs = {"shape": [None, len(names)], "meaning": "class probabilities (softmax); column i is class_names[i]"}
    return inputs, {"name": onnx_export.OUTPUT_NAME, "dtype": "float32", **outputs}


def _legacy(output: Path):
    """An export folder from before manifests: the files export writes, beside a model.json of its format."""
    try:
        ours = json.loads((output / CARD_FILE).read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        ours = False
    return lambda name: ours and name in (JAX_FILE, ONNX_FILE, CARD_FILE)


def check_output(output: Path, overwrite: bool) -> None:
    """Refuses to write where a user's files are (before any work, and again when replacing):
    a folder holding any file export cannot prove it wrote (run/outputs.py) is never replaced."""
    blocking = next((p for p in [output, *output.parents] if p.exists()), None)
    if blocking is not None and not blocking.is_dir():
        raise UserError(f"--output {output}: {blocking} is a file, not a folder")
    if not output.is_dir() or not any(output.iterdir()):
        return
    foreign = outputs.foreign_files(output, _legacy(output))
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise UserError(f"--output {output} holds files that are not an export ({shown}): left as they are, nothing "
                        "replaced; move them away or choose another --output")  # fmt: skip
    if not overwrite:
        raise UserError(f"--output {output} already holds an export; pass --overwrite to replace it")


def _put_in_place(files: dict[str, bytes], output: Path, overwrite: bool) -> None:
    """Writes the files into a fresh folder next to ``output``, then swaps it in (run/outputs.py):
    a reader sees the earlier export or the new one, never half of one; a failed write leaves no
    trace; a folder holding anything export did not write is never replaced."""
    partial = None
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        partial = outputs.partial_folder(output)
        for name, data in files.items():
            (partial / name).write_bytes(data)
        outputs.swap_in(
            partial, output, "jaxpcam.export", _legacy(output), check=lambda: check_output(output, overwrite)
        )
    except OSError as err:
        raise UserError(f"cannot write the export into {output}: {err.strerror or err}") from None
    finally:
        if partial is not None:
            shutil.rmtree(partial, ignore_errors=True)


def export_run(workdir: Path, checkpoint: str = "best", output: Path | None = None, overwrite: bool = False) -> dict:
    """Writes the export of ``workdir``'s checkpoint to ``output`` (default ``workdir/export``);
    returns what model.json holds."""
    workdir = Path(workdir)
    output = Path(output) if output is not None else workdir / "export"
    check_output(output, overwrite)
    run = load_run(workdir, checkpoint)
    log(f"exporting {workdir} checkpoint step {run.step} ({run.config.model.name}{run.weights_note})")
    calibration = _calibration(run)
    fn = inference_function(run.apply_fn, run.params, run.normalization, run.task, calibration["temperature"])
    spec, probe = image_spec(run.image_shape), probe_images(run.image_shape)
    expected = np.asarray(jax.jit(fn)(probe), np.float64)
    if not np.isfinite(expected).all():
        raise UserError(f"checkpoint {run.step} gives non-finite probabilities (the model diverged); "
                        "export another --checkpoint")  # fmt: skip
    blob, platforms, jax_info = serialize(fn, spec)
    jax_diff = _check_artifact(blob, probe, expected)
    onnx = onnx_export.convert(fn, spec, probe, expected)
    if onnx.data is None:
        log(f"no {ONNX_FILE}: {onnx.reason}")
    files = {JAX_FILE: blob} | ({ONNX_FILE: onnx.data} if onnx.data is not None else {})
    sha = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    inputs, outputs = _specs(run)
    card = {
        "format": FORMAT,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "run": str(workdir.resolve()),
        "checkpoint_step": run.step,
        "model": run.config.model.name,
        "weights": f"EMA of the parameters (decay {run.ema_decay:g})" if run.ema_decay > 0 else "the parameters",
        "input": inputs,
        "output": outputs,
        "class_names": list(run.task.class_names),
        "decision": _decision(run),
        "calibration": calibration,
        "fingerprint": {"sha256": {JAX_FILE: sha[JAX_FILE], ONNX_FILE: sha.get(ONNX_FILE)}},
        JAX_FILE: {"platforms": list(platforms), **jax_info, "max_abs_diff_vs_checkpoint": jax_diff},
        ONNX_FILE: {"written": onnx.data is not None, "reason": onnx.reason, **onnx.details},
        "training_data_profile": run.data_profile,
        "config": run.config.to_dict(),
        **_run_record(workdir),
    }
    card = json_ready(card)
    _put_in_place({**files, CARD_FILE: (json.dumps(card, indent=2) + "\n").encode()}, output, overwrite)
    return card


def export_summary(card: dict, output: Path) -> str:
    """The line the export command prints: the files written, the decision rule and the step."""
    written = [f"{JAX_FILE} ({', '.join(card[JAX_FILE]['platforms'])})"]
    if card[ONNX_FILE]["written"]:
        written.append(f"{ONNX_FILE} (onnxruntime within {card[ONNX_FILE]['max_abs_diff_vs_jax']:.1g} of jax)")
    decision = card["decision"]
    decided = f"threshold {decision['threshold']:.4f}" if decision["threshold"] is not None else "no threshold"
    decided = "argmax" if decision.get("rule") == "argmax" else decided
    temperature = (card.get("calibration") or {}).get("temperature", 1.0)
    decided += f", temperature {temperature:.4f}" if temperature != 1.0 else ""
    return (
        f"wrote {', '.join([*written, CARD_FILE])} ({decided}; checkpoint step {card['checkpoint_step']}) to {output}"
    )
