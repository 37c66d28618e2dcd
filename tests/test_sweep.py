"""Sweeps: points from a grid, and a tiny sweep run through the CLI (skip, resume, failure, summary)."""

import csv
import json
import os
import subprocess

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import REPO, command
from jaxpcam.config import base_config
from jaxpcam.errors import UserError
from jaxpcam.grid import expand, load_sweep, points, with_values


def test_the_seeds_grid_has_18_valid_points_first_key_slowest():
    sweep = load_sweep(REPO / "configs" / "sweep_mlp.py")
    grid = points(base_config(), sweep)
    assert len(grid) == 18
    assert grid[0].values == {"training.learning_rate": 1e-3, "data.batch_size": 32, "training.optimizer": "adam"}
    assert grid[1].values["training.optimizer"] == "sgd" and grid[2].values["data.batch_size"] == 64
    assert grid[17].name == "learning_rate=1e-05,batch_size=128,optimizer=sgd"
    assert grid[17].config.training.learning_rate == 1e-5 and grid[17].config.data.batch_size == 128
    assert len({p.name for p in grid}) == 18
    assert [p.config.seed for p in points(base_config(), load_sweep(REPO / "configs" / "sweep_seeds.py"))] == [
        42, 43, 44, 45, 46,
    ]  # fmt: skip


def test_point_lists_and_bad_sweeps():
    assert expand([{"seed": 1}, {"seed": 2, "training.epochs": 3}]) == [{"seed": 1}, {"seed": 2, "training.epochs": 3}]
    assert with_values(base_config(), {"training.learning_rate": 1}).training.learning_rate == 1.0
    with pytest.raises(UserError, match=r"sweep key training\.lr: not a config key"):
        points(base_config(), {"training.lr": [0.1]})
    with pytest.raises(UserError, match=r"sweep point 1 .*training\.optimizer: expected one of"):
        points(base_config(), {"training.optimizer": ["adam", "adm"]})
    with pytest.raises(UserError, match="same values"):
        points(base_config(), [{"seed": 1}, {"seed": 1}])
    with pytest.raises(UserError, match="non-empty list"):
        expand({"seed": []})


TINY_SWEEP = """
from jaxpcam.config import base_config

def get_config():
    config = base_config()
    config.experiment_name = "tiny_sweep"
    config.data.dir = {data!r}
    config.data.eval_batch_size = 48
    config.model.hidden_units = (16,)
    config.training.epochs = 2
    config.training.log_every_steps = 4
    config.checkpoint.every_steps = 4
    return config

def get_sweep():
    return {{"training.optimizer": ["adam", "sgd"], "data.batch_size": [32, 512]}}
"""


def _sweep(path, sweep_dir, *args, kill_after_save=None):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    argv = command("jaxpcam.sweep", [f"--config={path}", f"--sweep_dir={sweep_dir}", *args], kill_after_save)
    return subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_a_sweep_skips_finished_resumes_unfinished_records_failures_and_summarizes(tiny_pcam, tmp_path):
    sweep_file, sweep_dir = tmp_path / "sweep_tiny.py", tmp_path / "sweep"
    sweep_file.write_text(TINY_SWEEP.format(data=str(tiny_pcam)))

    listed = _sweep(sweep_file, sweep_dir, "--list")
    assert listed.returncode == 0 and "4 points" in listed.stdout
    assert "optimizer=sgd,batch_size=32" in listed.stdout

    first = _sweep(sweep_file, sweep_dir, "--index", "0")
    assert first.returncode == 0, first.stderr[-3000:]
    killed = _sweep(sweep_file, sweep_dir, "--index", "2", kill_after_save=8)
    assert killed.returncode != 0  # SIGKILL as the epoch-1 checkpoint starts; the step-4 one is complete
    assert "partial" in _sweep(sweep_file, sweep_dir, "--list").stdout.splitlines()[2]

    everything = _sweep(sweep_file, sweep_dir, "--all")
    assert everything.returncode == 1  # the batch-512 points cannot run on 256 training images
    log = everything.stderr
    assert "point 0 (optimizer=adam,batch_size=32) is done: skipped" in log
    assert "point 2 (optimizer=sgd,batch_size=32): resuming" in log
    assert "resuming from checkpoint step 4" in log
    assert "point 1 failed: config key data.batch_size: 512 is larger than the training split" in log

    rows = list(csv.DictReader((sweep_dir / "summary.csv").open()))
    assert [r["status"] for r in rows] == ["done", "failed", "done", "failed"]
    assert [r["champion"] for r in rows].count("true") == 1
    champion = max((r for r in rows if r["status"] == "done"), key=lambda r: float(r["best_val_roc_auc"]))
    assert champion["champion"] == "true"
    for r in rows:
        run_dir = sweep_dir / f"optimizer={r['training.optimizer']},batch_size={r['data.batch_size']}"
        point = json.loads((run_dir / "sweep_point.json").read_text())
        assert point["status"] == r["status"]
        if r["status"] == "done":
            assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 2
            events = EventAccumulator(str(run_dir))
            events.Reload()
            assert "_hparams_/session_start_info" in events.PluginTagToContent("hparams")
            best = events.Scalars("hparams/best_val_roc_auc")[0].value
            assert best == pytest.approx(float(r["best_val_roc_auc"]), rel=1e-6)
    assert "Champion by best_val_roc_auc" in (sweep_dir / "summary.md").read_text()


def test_a_listing_cut_off_by_the_reader_is_no_traceback(tmp_path):
    sweep_file = tmp_path / "sweep_tiny.py"
    sweep_file.write_text(TINY_SWEEP.format(data=str(tmp_path)))
    argv = command("jaxpcam.sweep", [f"--config={sweep_file}", f"--sweep_dir={tmp_path / 's'}", "--list"])
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    listing = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    listing.stdout.close()  # like `| head -0`: nobody reads
    stderr = listing.stderr.read().decode()
    assert listing.wait() == 141 and "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr
