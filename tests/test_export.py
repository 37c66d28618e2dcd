"""jaxpcam.export: model.jaxexport loads with jax alone and gives evaluate's probabilities,
model.onnx gives the same through onnxruntime, model.json says what a deployment needs, and a
user's files are never replaced unasked."""

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import train_in_process
from jaxpcam import evaluate
from jaxpcam import export as export_command
from jaxpcam.core.task import PCAM_ONE_LOGIT, Task
from jaxpcam.data.normalization import Normalization
from jaxpcam.evaluation import export as exporting
from jaxpcam.evaluation.loading import load_run

HAVE_ONNX = all(importlib.util.find_spec(name) is not None for name in ("jax2onnx", "onnxruntime"))
needs_onnx = pytest.mark.skipif(
    not HAVE_ONNX, reason="jax2onnx and onnxruntime are not installed (pip install '.[export]' and jax2onnx --no-deps)"
)


def _valid_images(workdir: Path) -> np.ndarray:
    data_dir = Path(json.loads((workdir / "config.json").read_text())["config"]["data"]["dir"])
    with h5py.File(data_dir / "camelyonpatch_level_2_split_valid_x.h5", "r") as f:
        return f["x"][:]


@pytest.fixture(scope="module")
def run(tiny_pcam, tmp_path_factory):
    """A tiny MLP run, exported once before evaluation chose a threshold (without jax2onnx)
    and once after (default folder)."""
    workdir = tmp_path_factory.mktemp("exportrun") / "run"
    train_in_process(workdir, tiny_pcam)
    mp = pytest.MonkeyPatch()
    mp.setitem(sys.modules, "jax2onnx", None)  # import jax2onnx now raises ImportError
    from jaxpcam.core.reporting import captured_log

    with captured_log() as before_lines:
        assert export_command.main(["--workdir", str(workdir), "--output", str(workdir / "before_eval")]) == 0
    mp.undo()
    assert evaluate.main(["--workdir", str(workdir)]) == 0
    assert export_command.main(["--workdir", str(workdir)]) == 0
    return workdir, before_lines


def test_model_json_says_what_a_deployment_needs(run):
    workdir, _ = run
    out = workdir / "export"
    card = json.loads((out / "model.json").read_text())
    loaded = load_run(workdir, "best")
    threshold = json.loads((workdir / "eval" / "threshold.json").read_text())
    record = json.loads((workdir / "config.json").read_text())
    assert card["format"] == exporting.FORMAT and card["checkpoint_step"] == loaded.step
    assert card["weights"] == "the parameters"  # no EMA in this run (an EMA run names its decay)
    assert card["input"] | {"normalization_mean": None, "normalization_std": None} == {
        **card["input"], "dtype": "uint8", "shape": [None, 96, 96, 3], "channel_order": "RGB", "value_range": [0, 255],
        "normalization_mean": None, "normalization_std": None,
    }  # fmt: skip
    assert card["input"]["normalization_mean"] == pytest.approx(np.asarray(loaded.normalization.mean).tolist())
    assert card["output"]["shape"] == [None] and card["class_names"] == ["no tumour", "tumour"]
    assert card["decision"]["threshold"] == threshold["value"] and card["decision"]["rule"] == threshold["rule"]
    assert card["decision"]["chosen_on_other_data"] is False  # chosen on the run's own valid split
    assert card["training_data_profile"] == loaded.data_profile and loaded.data_profile
    assert card["config"] == json.loads(json.dumps(loaded.config.to_dict()))
    assert card["provenance"] == record["provenance"] and card["resumptions"] == record["resumptions"]
    for name in ("model.jaxexport", "model.onnx"):
        expected = hashlib.sha256((out / name).read_bytes()).hexdigest() if (out / name).exists() else None
        assert card["fingerprint"]["sha256"][name] == expected
    # lowering for CUDA and ROCm works without a GPU: the one file serves all three
    assert card["model.jaxexport"]["platforms"] == ["cpu", "cuda", "rocm"]
    assert jax.export.deserialize((out / "model.jaxexport").read_bytes()).platforms == ("cpu", "cuda", "rocm")


# Runs in a fresh interpreter, outside the repository, with no PYTHONPATH; importing jaxpcam,
# flax, optax or orbax fails there, so the load cannot depend on them. The docs' snippet runs
# first, verbatim but for the path.
BLOCK_IMPORTS = textwrap.dedent(
    """
    import sys

    class Blocked:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("jaxpcam", "flax", "optax", "orbax"):
                raise ImportError(f"blocked: {name}")

    sys.meta_path.insert(0, Blocked())
    """
)
ON_VALID = textwrap.dedent(
    """
    assert p_tumour.shape == (8,)
    images = np.load("images.npy")
    np.save("whole.npy", np.asarray(model.call(images)))
    np.save("one.npy", np.asarray(model.call(images[:1])))
    assert not any(m.split(".")[0] in ("jaxpcam", "flax") for m in sys.modules), "jaxpcam or flax imported"
    print("loaded with", model.in_avals, "->", model.out_avals)
    """
)


def _docs_snippet(marker: str) -> str:
    text = (Path(__file__).resolve().parents[1] / "docs" / "evaluation-and-export.md").read_text()
    block = text.split(f"<!-- {marker} -->", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    return textwrap.dedent(block)


def test_jaxexport_loads_with_jax_alone_and_gives_evaluates_probabilities(run, tmp_path):
    workdir, _ = run
    np.save(tmp_path / "images.npy", _valid_images(workdir))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"JAX_PLATFORMS": "cpu"}
    snippet = _docs_snippet("jax-only-load").replace(
        "runs/pcam_mlp/seed42/export/model.jaxexport", str(workdir / "export" / "model.jaxexport")
    )
    done = subprocess.run(
        [sys.executable, "-c", BLOCK_IMPORTS + snippet + ON_VALID],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "uint8[batch,96,96,3]" in done.stdout and "float32[batch]" in done.stdout
    preds = np.genfromtxt(workdir / "eval" / "valid" / "predictions.csv", delimiter=",", names=True)
    whole = np.load(tmp_path / "whole.npy")
    assert whole.shape == (96,)
    np.testing.assert_allclose(whole, preds["probability"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(np.load(tmp_path / "one.npy"), preds["probability"][:1], rtol=0, atol=1e-6)


@needs_onnx
def test_onnx_gives_the_jax_probabilities(run):
    import onnxruntime

    workdir, _ = run
    session = onnxruntime.InferenceSession(str(workdir / "export" / "model.onnx"), providers=["CPUExecutionProvider"])
    [inp] = session.get_inputs()
    assert (inp.name, inp.type, inp.shape[1:]) == ("images", "tensor(uint8)", [96, 96, 3])
    assert isinstance(inp.shape[0], str)  # a symbolic batch
    preds = np.genfromtxt(workdir / "eval" / "valid" / "predictions.csv", delimiter=",", names=True)
    got = session.run(["probabilities"], {"images": _valid_images(workdir)})[0]
    np.testing.assert_allclose(got, preds["probability"], rtol=0, atol=1e-5)
    card = json.loads((workdir / "export" / "model.json").read_text())
    assert card["model.onnx"]["written"] and card["model.onnx"]["max_abs_diff_vs_jax"] <= 1e-5
    names: dict = {}
    exec(_docs_snippet("onnx-load").replace("runs/pcam_mlp/seed42", str(workdir)), names)
    assert names["p_tumour"].shape == (8,)


def test_without_jax2onnx_or_threshold_the_rest_is_written(run):
    workdir, lines = run
    out = workdir / "before_eval"
    assert sorted(p.name for p in out.iterdir()) == [".jaxpcam-written.json", "model.jaxexport", "model.json"]
    card = json.loads((out / "model.json").read_text())
    assert card["model.onnx"] == {"written": False, "reason": "jax2onnx is not installed"}
    assert card["fingerprint"]["sha256"]["model.onnx"] is None
    assert [line for line in lines if "model.onnx" in line] == ["no model.onnx: jax2onnx is not installed"]
    assert card["decision"]["threshold"] is None
    assert f"python -m jaxpcam.evaluate --workdir {workdir}" in card["decision"]["note"]


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_an_existing_export_is_replaced_only_with_overwrite(run, capsys):
    workdir, _ = run
    out = workdir / "export"
    before, inode = {p.name: p.read_bytes() for p in out.iterdir()}, out.stat().st_ino
    capsys.readouterr()
    assert export_command.main(["--workdir", str(workdir)]) == 2
    assert "--overwrite" in _one_line_error(capsys)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert export_command.main(["--workdir", str(workdir), "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(before) and out.stat().st_ino != inode  # a new folder
    assert not list(workdir.glob(".export.*"))  # no partial or old folder left behind
    # the same model (the bytes differ in MLIR debug locations, which name the calling frames)
    images = exporting.probe_images((96, 96, 3))
    old, new = before["model.jaxexport"], (out / "model.jaxexport").read_bytes()
    np.testing.assert_array_equal(*(np.asarray(jax.export.deserialize(b).call(images)) for b in (old, new)))


def test_user_files_and_bad_inputs_are_refused_in_one_line(run, tmp_path, capsys):
    workdir, _ = run
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    (tmp_path / "a_file").write_text("keep me")
    cases = {
        ("--output", str(tmp_path / "mine"), "--overwrite"): "not an export",
        ("--output", str(tmp_path / "a_file")): "is a file",
        ("--output", str(tmp_path / "a_file" / "sub")): "is a file",
        ("--checkpoint", "nine", "--output", str(tmp_path / "new")): "expected best, latest or a step number",
        ("--checkpoint", "999999", "--output", str(tmp_path / "new")): "no checkpoint at step 999999",
    }
    for extra, words in cases.items():
        capsys.readouterr()
        assert export_command.main(["--workdir", str(workdir), *extra]) == 2, extra
        assert words in _one_line_error(capsys), extra
    capsys.readouterr()
    assert export_command.main(["--workdir", str(tmp_path / "nowhere")]) == 2
    assert "not a folder" in _one_line_error(capsys)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me" and (tmp_path / "a_file").read_text() == "keep me"
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("task", [PCAM_ONE_LOGIT, Task(binary=True, num_logits=2, class_names=("a", "b")),
                                  Task(binary=False, num_logits=3, class_names=("4", "5", "6"))])  # fmt: skip
def test_the_exported_function_has_a_symbolic_batch_and_the_tasks_output(task):
    def apply_fn(variables, x, train):
        return x.reshape(x.shape[0], -1)[:, : task.num_logits] * variables["params"]["w"]

    norm = Normalization(jnp.full((3,), 100.0), jnp.full((3,), 50.0))
    fn = exporting.inference_function(apply_fn, {"w": jnp.float32(2.0)}, norm, task)
    blob, platforms, _ = exporting.serialize(fn, exporting.image_spec((4, 4, 3)))
    model = jax.export.deserialize(blob)
    images = exporting.probe_images((4, 4, 3), count=5)
    logits = (images.reshape(5, -1)[:, : task.num_logits] - 100.0) / 50.0 * 2.0
    if task.num_logits == 1:
        expected = 1 / (1 + np.exp(-logits[:, 0]))
    else:
        expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        expected = expected[:, 1] if task.binary else expected
    got = np.asarray(model.call(images))
    assert got.shape == ((5,) if task.binary else (5, 3))
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
    assert platforms == ("cpu", "cuda", "rocm")


@pytest.mark.parametrize("name", ["cnn", "resnet"])
def test_conv_models_export_to_both_formats(name, tiny_pcam, tmp_path):
    train_in_process(tmp_path / "run", tiny_pcam, name, **{"training.epochs": 1})
    card = exporting.export_run(tmp_path / "run", "latest", tmp_path / "out")
    images = _valid_images(tmp_path / "run")[:50]
    expected = load_run(tmp_path / "run", "latest").predict_fn()(images)
    got = jax.export.deserialize((tmp_path / "out" / "model.jaxexport").read_bytes()).call(images)
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=0, atol=1e-6)
    assert card["model"] == name and card["model.jaxexport"]["platforms"] == ["cpu", "cuda", "rocm"]
    if HAVE_ONNX:
        import onnxruntime

        session = onnxruntime.InferenceSession(str(tmp_path / "out" / "model.onnx"), providers=["CPUExecutionProvider"])
        np.testing.assert_allclose(session.run(None, {"images": images})[0], np.asarray(expected), rtol=0, atol=1e-5)


def test_start_fresh_archives_the_export_with_the_run(tmp_path):
    from jaxpcam.training.resume import archive_run

    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "model.json").write_text("{}")
    archive_run(tmp_path)
    assert not (tmp_path / "export").exists()
    assert [p.name for p in (tmp_path / "archive").glob("*/export/model.json")] == ["model.json"]


def test_a_threshold_chosen_with_tta_is_not_shipped_with_the_plain_model(tiny_pcam, tmp_path):
    workdir, eval_dir = tmp_path / "run", tmp_path / "run" / "eval"
    train_in_process(workdir, tiny_pcam, **{"training.epochs": 1})
    assert evaluate.main(["--workdir", str(workdir), "--tta"]) == 0  # eval/threshold_tta.json only
    assert export_command.main(["--workdir", str(workdir)]) == 0
    decision = json.loads((workdir / "export" / "model.json").read_text())["decision"]
    assert decision["threshold"] is None and "chosen with --tta" in decision["note"]
    assert evaluate.main(["--workdir", str(workdir)]) == 0  # its own, without TTA; the TTA one stays
    plain, tta = (json.loads((eval_dir / name).read_text()) for name in ("threshold.json", "threshold_tta.json"))
    assert plain["value"] != tta["value"]
    assert export_command.main(["--workdir", str(workdir), "--overwrite"]) == 0
    decision = json.loads((workdir / "export" / "model.json").read_text())["decision"]
    assert decision["threshold"] == plain["value"] and decision["tta"] is False

    # a run directory from before TTA thresholds had their own file: threshold.json saying "tta": true
    (eval_dir / "threshold_tta.json").replace(eval_dir / "threshold.json")
    shutil.rmtree(eval_dir / "thresholds")  # nor per-checkpoint files
    assert export_command.main(["--workdir", str(workdir), "--overwrite"]) == 0
    decision = json.loads((workdir / "export" / "model.json").read_text())["decision"]
    assert decision["threshold"] is None and "chosen with --tta" in decision["note"]


def test_model_json_names_ema_weights(tiny_pcam, tmp_path):
    workdir = tmp_path / "run"
    train_in_process(workdir, tiny_pcam, **{"training.epochs": 1, "training.ema_decay": 0.9})
    assert export_command.main(["--workdir", str(workdir)]) == 0
    card = json.loads((workdir / "export" / "model.json").read_text())
    assert card["weights"] == "EMA of the parameters (decay 0.9)"
