"""Data parallelism: row sharding units, and whole runs on 4 CPU devices and in 2 processes.

Tolerance: the global batch is the same however it is split, but the gradient all-reduce and
the loss mean sum in another order, so metrics agree to ~1e-7 relative here; the tests allow
rtol 1e-5 (the documented tolerance), and require exact equality where no float sum is involved.
"""

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import jax
import numpy as np
import portpicker
import pytest

from conftest import REPO, metrics_without_timing, run_main, tiny_overrides
from jaxpcam.core.errors import UserError
from jaxpcam.data.pcam import open_split
from jaxpcam.data.pipeline import LoadBatch, ProcessRows
from jaxpcam.training.parallel import DataParallel

RTOL = 1e-5
FOUR_CPU_DEVICES = {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"}


def test_process_rows_pads_the_global_batch_before_taking_this_process_rows():
    pairs = np.array([[10, 3], [11, 5], [12, 7]])
    padded = ProcessRows(None, pad_to=4)(pairs)
    np.testing.assert_array_equal(padded, [[10, 3], [11, 5], [12, 7], [-1, 0]])
    np.testing.assert_array_equal(ProcessRows(slice(2, 4), pad_to=4)(pairs), [[12, 7], [-1, 0]])
    np.testing.assert_array_equal(ProcessRows(slice(0, 2))(pairs), [[10, 3], [11, 5]])


def test_padding_rows_are_masked_zero_images(tiny_pcam):
    batch = LoadBatch(open_split(tiny_pcam, "valid"))(np.array([[0, 4], [-1, 0]]))
    assert batch["mask"].tolist() == [True, False]
    assert batch["image"][0].any() and not batch["image"][1].any()
    assert batch["label"][1] == 0


def test_batch_size_must_split_evenly_and_eval_batches_round_up():
    four = DataParallel(SimpleNamespace(devices=np.zeros(4)))
    four.check_batch_size(128)
    with pytest.raises(UserError, match=r"data\.batch_size: 130 does not split evenly over 4 devices.*128 or 132"):
        four.check_batch_size(130)
    assert four.eval_batch_size(510) == 512 and four.eval_batch_size(512) == 512


def test_one_device_holds_every_row_and_replicas_keep_key_types():
    parallel = DataParallel.over_all_devices()
    assert parallel.num_devices == jax.device_count() == 1
    assert parallel.local_rows(32) == slice(0, 32)
    key = parallel.replicate(jax.random.key(3))
    assert jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
    assert jax.random.key_data(key).tolist() == jax.random.key_data(jax.random.key(3)).tolist()
    batch = parallel.global_batch({"image": np.zeros((4, 2), np.uint8), "mask": np.ones(4, bool)})
    assert batch["image"].shape == (4, 2) and batch["image"].sharding == parallel.batch_sharding


def _train(workdir: Path, data: Path, env: dict | None = None, extra: tuple = ()) -> subprocess.CompletedProcess:
    args = ["--config", "configs/mlp.py", f"--workdir={workdir}", *tiny_overrides(data), *extra]
    return run_main(args, env_extra=env)


def _assert_same_run(got: list[dict], want: list[dict]) -> None:
    assert len(got) == len(want) == 2
    for g, w in zip(got, want, strict=True):
        assert g.keys() == w.keys()
        for key, value in w.items():
            if isinstance(value, float):
                np.testing.assert_allclose(g[key], value, rtol=RTOL, err_msg=key)
            else:
                assert g[key] == value, key


@pytest.fixture(scope="module")
def one_device_run(tiny_pcam, tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("parallel") / "one"
    result = _train(workdir, tiny_pcam)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir


def test_four_devices_train_like_one(one_device_run, tiny_pcam, tmp_path):
    result = _train(tmp_path / "four", tiny_pcam, FOUR_CPU_DEVICES)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "data parallel over 4 CPU device(s): global batch 32, 8 per device" in result.stderr
    assert "train and valid copied to 4 device(s)" in result.stderr
    _assert_same_run(metrics_without_timing(tmp_path / "four"), metrics_without_timing(one_device_run))

    host = _train(tmp_path / "host", tiny_pcam, FOUR_CPU_DEVICES, ("--config.data.placement=host",))
    assert host.returncode == 0, host.stderr[-3000:]
    assert metrics_without_timing(tmp_path / "host") == metrics_without_timing(tmp_path / "four")

    bad = _train(tmp_path / "bad", tiny_pcam, FOUR_CPU_DEVICES, ("--config.data.batch_size=30",))
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "data.batch_size: 30 does not split evenly over 4 devices" in bad.stderr


def test_two_processes_on_localhost_train_like_one(one_device_run, tiny_pcam, tmp_path):
    """jax.distributed with a local coordinator and CPU (gloo) collectives; 2 devices each."""
    port = portpicker.pick_unused_port()
    workdir = tmp_path / "two"
    args = ["--config", "configs/mlp.py", f"--workdir={workdir}", *tiny_overrides(tiny_pcam)]
    args += [f"--coordinator_address=localhost:{port}", "--num_processes=2"]
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "jaxpcam.main", *args, f"--process_id={i}"],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outputs = [p.communicate(timeout=240) for p in procs]
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err[-3000:]
    assert "4 CPU device(s) in 2 processes (this is process 0)" in outputs[0][1]
    assert "train and valid copied to 4 device(s)" in outputs[0][1]  # each process placed its own two
    assert "epoch 1 done" not in outputs[1][1]  # only process 0 logs
    _assert_same_run(metrics_without_timing(workdir), metrics_without_timing(one_device_run))
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["16", "8"]
