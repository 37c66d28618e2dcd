"""Whole runs through the CLI on tiny generated PCAM files."""

import json
import os
import platform
import re
from importlib import metadata
from pathlib import Path

import numpy as np
import orbax.checkpoint as ocp
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import metrics_without_timing, run_main, tiny_overrides, train_in_process
from jaxpcam.core.runtime import HUGEPAGE_TUNABLE, hugepage_environment, read_thp_setting, with_cpu_defaults


def _train(workdir: Path, data: Path, **extra):
    result = run_main(["--config", "configs/mlp.py", f"--workdir={workdir}", *tiny_overrides(data, **extra)])
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def twin_runs(tiny_pcam, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    logs = [_train(root / name, tiny_pcam, **extra) for name, extra in (("a", {}), ("b", {}), ("c", {"seed": 43}))]
    return root, logs


def test_same_seed_gives_bit_identical_metrics_and_another_seed_does_not(twin_runs):
    root, _ = twin_runs
    a, b, c = metrics_without_timing(root / "a"), metrics_without_timing(root / "b"), metrics_without_timing(root / "c")
    assert len(a) == 2 and [r["epoch"] for r in a] == [1, 2]
    assert a == b
    assert a != c


def test_holding_the_data_in_memory_changes_nothing_but_speed(twin_runs, tiny_pcam, tmp_path):
    root, _ = twin_runs
    log = _train(tmp_path / "ram", tiny_pcam, **{"data.in_memory": True, "data.placement": "host"})
    assert "data.in_memory: train and valid held in RAM" in log.stderr
    assert metrics_without_timing(tmp_path / "ram") == metrics_without_timing(root / "a")


def test_data_on_the_device_trains_on_exactly_the_host_pipelines_stream(twin_runs, tiny_pcam, tmp_path):
    root, logs = twin_runs
    assert "data.placement=auto chose device" in logs[0].stderr  # the tiny splits fit anywhere
    # training.deterministic only concerns XLA:GPU: off, the CPU numbers stay the same too; nor do
    # Grain worker processes change the stream, and their batches' shared memory is freed at the end.
    host = {"data.placement": "host", "training.deterministic": False, "data.num_workers": 2}
    log = _train(tmp_path / "host", tiny_pcam, **host)
    assert "data.placement=host" in log.stderr and "copied to 1 device" not in log.stderr
    # The resource tracker's report at exit; seen once in ~60 runs under a loaded suite (a Grain
    # shutdown race not reproduced since): the whole log says which batch it was.
    assert "leaked shared_memory" not in log.stderr, log.stderr[-6000:]
    assert metrics_without_timing(tmp_path / "host") == metrics_without_timing(root / "a")
    prov = json.loads((tmp_path / "host" / "config.json").read_text())["provenance"]
    assert prov["data"]["placement"] == "host" and prov["deterministic_gpu_ops"] is False
    assert "--xla_gpu_deterministic_ops=false" in prov["xla_flags"].split()


def test_metrics_jsonl_has_the_contract_fields(twin_runs):
    root, _ = twin_runs
    record = json.loads((root / "a" / "metrics.jsonl").read_text().splitlines()[0])
    for key in ("epoch", "step", "train_loss", "val_loss", "val_accuracy", "val_roc_auc", "val_f2", "lr"):
        assert key in record
    assert record["step"] == 256 // 32 and record["lr"] == 1e-3
    assert record["images_per_second"] > 0


def test_tensorboard_has_the_contract_tags(twin_runs):
    root, _ = twin_runs
    events = EventAccumulator(str(root / "a"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/grad_norm", "train/lr", "val/loss", "val/accuracy", "val/roc_auc", "val/f2"} <= tags
    assert [e.step for e in events.Scalars("train/loss")] == list(range(1, 17))  # every step
    assert len(events.Scalars("val/roc_auc")) == 2  # every epoch


def test_config_json_records_provenance(twin_runs, tiny_pcam):
    root, _ = twin_runs
    saved = json.loads((root / "a" / "config.json").read_text())
    assert saved["config"]["data"]["dir"] == str(tiny_pcam)
    prov = saved["provenance"]
    assert {"git", "packages", "devices", "data"} <= prov.keys()
    assert prov["packages"]["jax"] and prov["devices"]
    for flag in with_cpu_defaults("", metadata.version("jaxlib")).split():  # none on jaxlib 0.12
        assert flag in prov["xla_flags"]
    assert "--xla_gpu_deterministic_ops=true" in prov["xla_flags"].split()
    assert prov["deterministic_gpu_ops"] is True and prov["matmul_precision"] == "default"
    if hugepage_environment(os.environ, platform.libc_ver(), read_thp_setting()) is not None:
        assert HUGEPAGE_TUNABLE in prov["glibc_tunables"]  # the command restarted itself with huge pages
    files = {f["name"]: f for f in prov["data"]["files"]}
    assert "camelyonpatch_level_2_split_train_x.h5" in files and len(files) == 6
    assert files["camelyonpatch_level_2_split_train_x.h5"]["fingerprint"].startswith("sampled-blake2b:")


def test_checkpoint_alone_holds_params_config_and_metrics(twin_runs):
    root, _ = twin_runs
    manager = ocp.CheckpointManager((root / "a" / "checkpoints").resolve())
    assert manager.all_steps() == [8, 16]
    restored = manager.restore(16)  # no target structure and no jaxpcam code needed
    assert restored.config["model"]["hidden_units"] == [16]
    assert restored.metrics["epoch"] == 2
    assert restored.schedule["epochs_done"] == 2
    np.testing.assert_array_equal(restored.state["normalization"]["mean"], [127.5] * 3)
    kernel = restored.state["params"]["Dense_0"]["kernel"]
    assert kernel.shape == (96 * 96 * 3, 16) and np.isfinite(kernel).all()


def test_progress_in_a_log_file_is_plain_labelled_lines_and_the_epoch_speed_matches_metrics(twin_runs):
    root, logs = twin_runs
    err = logs[0].stderr  # a pipe, as a SLURM .out file: no live bar
    assert "\r" not in err and "\x1b" not in err
    assert re.search(
        r"epoch 2/2 step 6/8 \(global 14\) loss \d\.\d{4} \| [\d,]+ img/s \(last 3 steps\) \| ETA epoch ", err
    )
    epoch_speeds = [int(s.replace(",", "")) for s in re.findall(r"done: .* \| ([\d,]+) img/s epoch mean", err)]
    recorded = [
        r["images_per_second"] for r in map(json.loads, (root / "a" / "metrics.jsonl").read_text().splitlines())
    ]
    assert epoch_speeds == [round(v) for v in recorded]  # the console and metrics.jsonl name the same measure
    assert "best epoch" in err and "run directory" in err
    assert err.count("training on the BUILT-IN SYNTHETIC SAMPLE") == 1  # data.dir names the sample's files


def test_resuming_a_finished_run_with_more_epochs_matches_a_longer_run(tiny_pcam, tmp_path):
    train_in_process(tmp_path / "long", tiny_pcam, **{"training.epochs": 3})
    short = tmp_path / "short"
    train_in_process(short, tiny_pcam)
    lines = train_in_process(short, tiny_pcam, **{"training.epochs": 3})
    assert any(line.startswith("resuming from checkpoint step 16") for line in lines)
    assert metrics_without_timing(short) == metrics_without_timing(tmp_path / "long")


def test_resuming_with_a_different_config_is_refused(twin_runs, tiny_pcam):
    root, _ = twin_runs
    before = (root / "a" / "metrics.jsonl").read_text()
    args = tiny_overrides(tiny_pcam, **{"training.learning_rate": 0.5})
    result = run_main(["--config", "configs/mlp.py", f"--workdir={root / 'a'}", *args])
    assert result.returncode == 2
    assert "training.learning_rate" in result.stderr and "Traceback" not in result.stderr
    assert (root / "a" / "metrics.jsonl").read_text() == before
