"""model.onnx for jaxpcam.export: the exported function converted by jax2onnx, kept only when
onnxruntime runs it and gives the JAX outputs (optional: ``pip install '.[export]'`` plus
jax2onnx; README, "Exporting a model").

Checked for configs/mlp.py, cnn.py and resnet.py in float32. A bfloat16 run converts but
onnxruntime's CPU provider has no bfloat16 Conv or Gemm, so it gets no model.onnx.
"""

import contextlib
import dataclasses
import importlib
import importlib.metadata
import logging
from collections.abc import Callable, Iterator

import jax
import numpy as np

# Probabilities from onnxruntime and XLA differ by float32 rounding (measured: at most 3e-7 for
# the three configs' full-size models); anything larger means the conversion changed the model.
ONNX_TOLERANCE = 1e-5
INPUT_NAME, OUTPUT_NAME = "images", "probabilities"


@dataclasses.dataclass(frozen=True)
class OnnxResult:
    data: bytes | None  # the serialized ModelProto; None when no model.onnx is written
    reason: str | None  # why not, in words
    details: dict  # for model.json: versions, opset, the measured difference to JAX


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """jax2onnx imports every plugin and logs a traceback for each whose optional package
    (equinox, dm-pix: its examples) is missing; onnx_ir warns about untyped shape constants."""
    loggers = [logging.getLogger(name) for name in ("jax2onnx", "onnx_ir")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def convert(fn: Callable, image_spec: jax.ShapeDtypeStruct, probe: np.ndarray, expected: np.ndarray) -> OnnxResult:
    """``fn`` (uint8 images -> probabilities) as ONNX with the symbolic batch of ``image_spec``,
    run by onnxruntime on ``probe`` and compared with ``expected`` (JAX's outputs)."""
    try:
        to_onnx = importlib.import_module("jax2onnx").to_onnx  # first: the one a user is likelier to lack
        onnxruntime = importlib.import_module("onnxruntime")
    except ImportError as err:
        return OnnxResult(None, f"{err.name or 'jax2onnx'} is not installed", {})
    details = {"jax2onnx_version": _version("jax2onnx"), "onnxruntime_version": _version("onnxruntime")}
    try:
        with _quiet():
            proto = to_onnx(fn, [image_spec], input_names=[INPUT_NAME], output_names=[OUTPUT_NAME])
        data = proto.SerializeToString()
        details["opset"] = max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    except Exception as err:  # a primitive jax2onnx cannot convert: no model.onnx, the rest goes on
        return OnnxResult(None, f"jax2onnx could not convert the model: {first_line(err)}", details)
    try:
        session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
        got = session.run([OUTPUT_NAME], {INPUT_NAME: probe})[0]
    except Exception as err:
        return OnnxResult(None, f"onnxruntime cannot run the converted model: {first_line(err)}", details)
    if got.shape != expected.shape:
        return OnnxResult(None, f"the converted model gives shape {got.shape}, JAX {expected.shape}", details)
    diff = float(np.max(np.abs(got.astype(np.float64) - expected)))
    details = {**details, "max_abs_diff_vs_jax": diff, "tolerance": ONNX_TOLERANCE}
    if not diff <= ONNX_TOLERANCE:
        return OnnxResult(None, f"onnxruntime's outputs differ from JAX's by {diff:.3g} (> {ONNX_TOLERANCE})", details)
    return OnnxResult(data, None, details)


def first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:300]
