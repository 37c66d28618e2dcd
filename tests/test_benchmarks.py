"""The benchmark scripts run and write valid JSON on a tiny setting (no timing is asserted)."""

import importlib.util
import json
import os
import re
import subprocess
import sys

import pytest

from conftest import REPO


def _load(name):
    """A benchmark script as a module; its folder on sys.path, as when it runs as a script (the
    scripts share benchmarks/_arguments.py)."""
    if str(REPO / "benchmarks") not in sys.path:
        sys.path.insert(0, str(REPO / "benchmarks"))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_throughput_synthetic_and_h5_write_json(tiny_pcam, tmp_path, capsys):
    throughput = _load("throughput")
    out = tmp_path / "synthetic.json"
    args = ["--batch_sizes", "1,4", "--steps", "2", "--windows", "2", "--warmup", "1", "--json", str(out)]
    assert throughput.main([*args, "--dtype", "bfloat16"]) == 0
    payload = json.loads(out.read_text())
    assert {"device", "jax", "xla_flags"} <= payload["environment"].keys()
    results = payload["results"]
    seen = {(r["mode"], r["batch_size"], r["dtype"]) for r in results}
    assert ("train", 1, "bfloat16") in seen and ("forward", 4, "float32") in seen  # f32 twin on CPU
    for r in results:
        assert r["images_per_second"] > 0 and r["compile_s"] > 0 and r["peak_memory"]["bytes"] > 0
        assert r["images_per_second_min"] <= r["images_per_second"] <= r["images_per_second_max"]
    assert "Low precision on CPU" in capsys.readouterr().out

    assert _load("results_table").main([str(out)]) == 0
    table = capsys.readouterr().out
    assert "| float32 img/s | bfloat16 img/s | bfloat16/f32 |" in table
    row = next(line for line in table.splitlines() if line.startswith("| mlp | synthetic | train | 1 |"))
    by = {(r["mode"], r["batch_size"], r["dtype"]): r["images_per_second"] for r in results}
    assert f"{by[('train', 1, 'bfloat16')] / by[('train', 1, 'float32')]:.2f}x" in row

    out = tmp_path / "h5.json"
    h5_args = ["--source", "h5", "--data_dir", str(tiny_pcam), "--batch_sizes", "8", "--steps", "2"]
    assert throughput.main([*h5_args, "--in_memory", "--windows", "1", "--warmup", "1", "--json", str(out)]) == 0
    results = json.loads(out.read_text())["results"]
    assert {r["mode"] for r in results} == {"train", "forward"}
    assert all(0.0 <= r["data_wait_fraction"] <= 1.0 and r["in_memory"] for r in results)


def test_pcam_size_folder_and_device_resident_throughput(tiny_pcam, tmp_path):
    import h5py
    import numpy as np

    from jaxpcam.data.pcam import open_split

    big = tmp_path / "big"
    assert _load("make_pcam_size").main([str(big), "--times", "2", "--source", str(tiny_pcam)]) == 0
    small, tiled = open_split(tiny_pcam, "train"), open_split(big, "train")
    assert len(tiled) == 2 * len(small) and tiled.dtype == "uint8"
    np.testing.assert_array_equal(tiled.read(np.array([len(small) + 5])), small.read(np.array([5])))
    with h5py.File(big / "camelyonpatch_level_2_split_valid_y.h5") as f:
        assert f["y"].shape == (2 * 96, 1, 1, 1)

    out = tmp_path / "device.json"
    args = ["--source", "device", "--data_dir", str(big), "--batch_sizes", "8", "--steps", "2", "--windows", "1"]
    assert _load("throughput").main([*args, "--warmup", "1", "--json", str(out)]) == 0
    payload = json.loads(out.read_text())
    assert payload["environment"]["deterministic_gpu_ops"] is True
    results = payload["results"]
    assert {(r["mode"], r["records"]) for r in results} == {("train", 512), ("forward", 192)}
    assert all(r["images_per_second"] > 0 and 0.0 <= r["data_wait_fraction"] <= 1.0 for r in results)


def test_data_pipeline_benchmark_writes_json(tiny_pcam, tmp_path):
    data_pipeline = _load("data_pipeline")
    out = tmp_path / "pipeline.json"
    args = ["--data_dir", str(tiny_pcam), "--workers", "0", "--batch_size", "8", "--batches", "2", "--windows", "2"]
    assert data_pipeline.main([*args, "--warmup", "1", "--json", str(out), "--stain_augment", "0.1"]) == 0
    payload = json.loads(out.read_text())
    (result,) = payload["results"]
    assert result["workers"] == 0 and result["images_per_second"] > 0 and payload["stain_augment"] == 0.1


def test_gpu_table_script_parses_and_calls_existing_scripts():
    script = REPO / "benchmarks" / "gpu_table.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    called = set(re.findall(r'"\$here/(\w+\.py)"', script.read_text()))
    assert called >= {"throughput.py", "results_table.py", "torch_reference.py", "cnn_parity.py", "data_pipeline.py"}
    assert all((REPO / "benchmarks" / name).is_file() for name in called)


def test_gpu_members_script_parses_and_its_calls_are_accepted():
    """benchmarks/gpu_members.sh waits for a lent GPU: here that it parses, calls scripts that exist,
    and that members.py and startup.py accept the arguments it passes them."""
    script = REPO / "benchmarks" / "gpu_members.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    called = set(re.findall(r'"\$here/(\w+\.py)"', script.read_text()))
    assert called == {"startup.py", "make_pcam_size.py", "members.py"}
    members = _load("members")
    args = members.parse(["--config", "configs/cnn.py", "--seeds", "42,43,44,45,46,47,48,49", "--variants",
                          "sweep,vectorized", "--rounds", "1", "--set", "training.member_layout=vmap"])  # fmt: skip
    assert len(args.seeds) == 8 and args.variants == ["sweep", "vectorized"]
    startup = subprocess.run(
        [sys.executable, "benchmarks/startup.py", "--models", "mlp,cnn,resnet", "--rounds", "0"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert "--rounds: 0 is less than 1" in startup.stderr and "--models" not in startup.stderr.splitlines()[-1]


def test_profile_step_lists_the_compiled_operations_by_time():
    done = subprocess.run(
        [sys.executable, "benchmarks/profile_step.py", "--model", "mlp", "--batch_size", "2", "--steps", "1"],
        cwd=REPO,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = re.findall(r"^\s+(\d+\.\d+)\s+host\s+(\S+)$", done.stdout, re.M)
    assert any("fusion" in name for _, name in rows)  # per-operation events, not just the runtime's
    assert [float(ms) for ms, _ in rows] == sorted((float(ms) for ms, _ in rows), reverse=True)


def test_checkpoint_cost_times_save_restore_and_checksums(tmp_path, capsys):
    config = tmp_path / "tiny.py"
    config.write_text(
        "from jaxpcam.config import base_config\n\n\n"
        "def get_config():\n    c = base_config()\n    c.model.hidden_units = (8,)\n    return c\n"
    )
    out = tmp_path / "cost.json"
    assert _load("checkpoint_cost").main(["--config", str(config), "--rounds", "2", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["params"] == 96 * 96 * 3 * 8 + 8 + 8 + 1
    for key in ("save_s", "restore_s", "checksum_s", "verify_s"):
        assert 0 < result[key]["min"] <= result[key]["median"] <= result[key]["max"]
    assert "of which checksums" in capsys.readouterr().out


def test_stain_tta_script_parses_and_names_keys_and_columns_that_exist():
    """benchmarks/stain_tta.sh (docs/training.md's stain/TTA table) takes 20 minutes: here only that it
    parses and that what it passes exists."""
    from jaxpcam.config import base_config
    from jaxpcam.config.files import load_config_file

    script = REPO / "benchmarks" / "stain_tta.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    load_config_file(str(REPO / re.search(r"--config (\S+)", text).group(1)))
    flat = base_config().to_dict()
    for key in re.findall(r"--config\.([\w.]+)=", text):
        section, name = key.split(".") if "." in key else ("", key)
        assert name in (flat[section] if section else flat), key
    assert re.search(r"--metrics val_roc_auc,test_roc_auc,test_roc_auc_tta", text)


def test_every_benchmark_answers_help_with_its_usage_and_exit_0():
    """docs/configuration.md and benchmarks/README.md say every benchmark answers --help; torch_reference.py
    also without PyTorch."""
    scripts = sorted(s for s in (REPO / "benchmarks").glob("*.py") if not s.name.startswith("_"))  # _: shared code
    runs = {s.name: subprocess.Popen([sys.executable, str(s), "-h"], cwd=REPO, stdout=subprocess.PIPE, text=True)
            for s in scripts}  # fmt: skip
    for name, run in runs.items():
        out, _ = run.communicate(timeout=120)
        assert run.returncode == 0 and out.startswith("usage:"), name
    assert {"results_table.py", "torch_reference.py", "throughput.py"} <= set(runs)


def test_features_benchmark_writes_ratios_to_plain_and_a_table(tmp_path):
    """A smoke run (no timing asserted): a few rows on a tiny MLP; every row's config is valid."""
    features = _load("features")
    for model in ("mlp", "cnn"):
        for overrides in features.feature_rows(128, features.recipe_overrides()).values():
            features.run_config(model, tmp_path, 128, overrides, {})  # validates, raises on a bad key
    out, table = tmp_path / "features.json", tmp_path / "features.md"
    args = ["--models", "mlp", "--set", "model.hidden_units=(8,)", "--batch_size", "4", "--steps", "2"]
    args += ["--valid", "16", "--rounds", "2", "--rows", "accum_steps 4,recipe"]
    args += ["--json", str(out), "--markdown", str(table)]
    assert features.main(args) == 0
    results = {r["row"]: r for r in json.loads(out.read_text())["results"]}
    assert set(results) == {"plain", "grad_accum_steps 4 (batch 1)", "pcam_recipe keys", "evaluate --tta"}
    assert results["plain"]["time_vs_plain"] == {"median": 1.0, "min": 1.0, "max": 1.0}
    assert results["pcam_recipe keys"]["overrides"]["training.optimizer"] == "adamw"
    for r in results.values():
        assert len(r["values"]) == 2 and all(v > 0 for v in r["values"])
        assert r["time_vs_plain"]["min"] <= r["time_vs_plain"]["median"] <= r["time_vs_plain"]["max"]
    assert "| mlp | evaluate --tta | eval s (valid) |" in table.read_text()


def test_members_benchmark_builds_each_variants_commands_and_ratios(tmp_path):
    """No training here (each variant is several processes): the command lines and the ratios."""
    members = _load("members")
    folder = tmp_path / "v"
    folder.mkdir()
    (sweep,) = members.commands("vectorized8", "configs/smlp_digits.py", [1, 2], folder, ["--config.training.epochs=1"])
    assert sweep[1:3] == ["-m", "jaxpcam.sweep"] and "--vectorize" in sweep
    assert "--config.training.steps_per_dispatch=8" in sweep and sweep[-1] == "--config.training.epochs=1"
    assert '"seed": [1, 2]' in (folder / "seeds_sweep.py").read_text()
    mains = members.commands("mains", "configs/smlp_digits.py", [1, 2], folder, [])
    assert [argv[-2:] for argv in mains] == [
        ["--config.seed=1", f"--workdir={folder / 'runs' / '1'}"],
        ["--config.seed=2", f"--workdir={folder / 'runs' / '2'}"],
    ]
    ratios = members.summarize({"sweep": [10.0, 20.0], "vectorized": [5.0, 12.0]})
    assert ratios["vectorized"]["vs_sweep"] == {"median": 0.55, "min": 0.5, "max": 0.6}


@pytest.mark.parametrize(
    ("script", "args", "says"),
    [
        ("members.py", ["--rounds", "0"], "--rounds: 0 is less than 1"),
        ("members.py", ["--variants", "sweep,foo"], "--variants: unknown foo"),
        ("startup.py", ["--models", "foo"], "--models: foo: expected some of cnn, mlp, resnet"),
        ("features.py", ["--set", "foo.bar=1"], "--set foo.bar=1 on configs/mlp.py"),
        ("features.py", ["--json", "/proc/version/x.json"], "--json: /proc/version is not a folder"),
        ("members.py", ["--json", "/proc/x/y.json"], "--json: cannot make /proc/x"),
        ("throughput.py", ["--source", "h5", "--data_dir", "/nonexistent-folder", "--steps", "1"], "is not a folder"),
    ],
)
def test_a_bad_benchmark_argument_is_one_line_before_any_measuring(script, args, says):
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert says in done.stderr.strip().splitlines()[-1]
