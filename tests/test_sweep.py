"""Sweeps: points from a grid, and a tiny sweep run through the CLI (skip, resume, failure, summary)."""

import ast
import csv
import json
import os
import socket
import subprocess
import sys
import time

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import REPO, command
from jaxpcam import sweep as sweep_command
from jaxpcam.config import base_config
from jaxpcam.core.errors import UserError
from jaxpcam.evaluation.sweep_summary import PointRow, summarize
from jaxpcam.run import lock as workdir_lock
from jaxpcam.run.record import SWEEP_POINT_FILE as STATUS_FILE
from jaxpcam.sweeps.driver import keep_less
from jaxpcam.sweeps.grid import expand, load_sweep, points, with_values
from jaxpcam.sweeps.runner import run_point
from jaxpcam.sweeps.status import point_epochs, point_status
from jaxpcam.training.loop import train_and_evaluate


def _rows(points, run_dirs):
    """The summary's rows, with each point's status as the sweep command finds it."""
    return [PointRow(p, d, point_status(p, d), point_epochs(p, d)) for p, d in zip(points, run_dirs, strict=True)]


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
    for empty in ({}, [{"seed": 1}, {}]):  # a point without values would run in the sweep folder itself
        with pytest.raises(UserError, match="a point with no values"):
            expand(empty)


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
            assert json.loads((run_dir / "config.json").read_text())["config"]["checkpoint"]["keep"] == 1
            assert len([p for p in (run_dir / "checkpoints").iterdir() if p.name.isdigit()]) <= 2  # latest, best
            events = EventAccumulator(str(run_dir))
            events.Reload()
            assert "_hparams_/session_start_info" in events.PluginTagToContent("hparams")
            best = events.Scalars("hparams/best_val_roc_auc")[0].value
            assert best == pytest.approx(float(r["best_val_roc_auc"]), rel=1e-6)
    assert "Champion by best_val_roc_auc" in (sweep_dir / "summary.md").read_text()


def test_a_users_summary_in_the_sweep_dir_stops_the_sweep_before_any_point_trains(tmp_path, capsys):
    sweep_file = tmp_path / "sweep_tiny.py"
    sweep_file.write_text(TINY_SWEEP.format(data=str(tmp_path)))
    sweep_dir = tmp_path / "sweep"
    sweep_dir.mkdir()
    (sweep_dir / "summary.md").write_text("# my notes on this sweep\n")
    assert sweep_command.main([f"--config={sweep_file}", f"--sweep_dir={sweep_dir}", "--all"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "summary.md exists and is not a file jaxpcam wrote" in err[0], err
    assert "choose another --sweep_dir" in err[0] and "--overwrite" not in err[0]  # the sweep has no --overwrite
    assert [p.name for p in sweep_dir.iterdir()] == ["summary.md"]  # no point started
    assert (sweep_dir / "summary.md").read_text() == "# my notes on this sweep\n"


def test_a_listing_cut_off_by_the_reader_is_no_traceback(tmp_path):
    sweep_file = tmp_path / "sweep_tiny.py"
    sweep_file.write_text(TINY_SWEEP.format(data=str(tmp_path)))
    argv = command("jaxpcam.sweep", [f"--config={sweep_file}", f"--sweep_dir={tmp_path / 's'}", "--list"])
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    listing = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    listing.stdout.close()  # like `| head -0`: nobody reads
    stderr = listing.stderr.read().decode()
    assert listing.wait() == 141 and "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr


def _point(epochs: int):
    """A sweep point whose config (what the asking command says) trains ``epochs`` epochs."""
    config = base_config()
    config.training.epochs = epochs
    return points(config, [{"seed": 1}])[0]


def _recorded(run_dir, status: str | None, trained_for: int, finished: int):
    """A point's run directory as training leaves it: config.json with the epochs it was trained
    for, ``finished`` epochs in metrics.jsonl, and its sweep_point.json (unless status is None)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    config = base_config()
    config.seed, config.training.epochs = 1, trained_for  # _point's values
    (run_dir / "config.json").write_text(json.dumps({"config": config.to_dict()}))
    records = [{"epoch": e + 1, "val_roc_auc": 0.6 + e / 10, "val_f2": 0.5, "val_accuracy": 0.6, "val_loss": 0.5}
               for e in range(finished)]  # fmt: skip
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    if status:
        (run_dir / STATUS_FILE).write_text(json.dumps({"status": status, "epochs": trained_for}))


def test_a_point_done_with_an_override_is_done_whatever_the_asking_command_says(tmp_path):
    run_dir = tmp_path / "seed=1"
    _recorded(run_dir, "done", trained_for=1, finished=1)  # run with --config.training.epochs=1
    asked = _point(epochs=5)  # --list / --summary without the override
    assert point_status(asked, run_dir) == "done"
    markdown, table, champion = summarize(_rows([asked], [run_dir]), "best_val_roc_auc", "max")
    assert champion is asked and "No champion" not in markdown
    assert next(csv.DictReader(table.splitlines()))["epochs"] == "1/1"


def test_a_point_that_stopped_early_is_done_at_the_epochs_it_has(tmp_path):
    run_dir = tmp_path / "seed=1"
    _recorded(run_dir, "done", trained_for=5, finished=3)  # training.early_stopping_patience ended it at 3 of 5
    assert point_status(_point(5), run_dir) == "partial"  # without the mark: killed on the way
    records = (run_dir / "metrics.jsonl").read_text().splitlines()
    last = {**json.loads(records[-1]), "stopped_early": True}
    (run_dir / "metrics.jsonl").write_text("\n".join([*records[:-1], json.dumps(last)]) + "\n")
    assert point_status(_point(5), run_dir) == "done" and point_epochs(_point(5), run_dir) == (3, 3)


def test_a_done_point_trained_further_or_whose_outputs_are_gone(tmp_path):
    run_dir = tmp_path / "seed=1"
    _recorded(run_dir, "done", trained_for=3, finished=3)  # trained on by jaxpcam.main to 3 epochs
    assert point_status(_point(2), run_dir) == "done"
    _recorded(run_dir, "done", trained_for=3, finished=2)  # ... and killed on the way
    assert point_status(_point(2), run_dir) == "partial"
    (run_dir / "metrics.jsonl").unlink()
    (run_dir / "config.json").unlink()
    assert point_status(_point(2), run_dir) == "not started"  # the record alone proves nothing
    (run_dir / "config.json").write_text("{not json")  # damaged: the record's epochs, no traceback
    assert point_epochs(_point(2), run_dir) == (0, 3)


def test_a_running_record_is_running_only_while_its_lock_lives(tmp_path):
    run_dir = tmp_path / "seed=1"
    _recorded(run_dir, "running", trained_for=2, finished=1)
    assert point_status(_point(2), run_dir) == "partial"  # killed: no lock
    holder = workdir_lock.acquire(run_dir)
    assert point_status(_point(2), run_dir) == "running"
    workdir_lock.release(run_dir, holder)
    lock = run_dir / workdir_lock.LOCK_NAME
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True).stdout)
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": dead, "token": "t", "started": "", "beat": 0}))
    assert point_status(_point(2), run_dir) == "partial"  # SIGKILLed: its lock stayed behind
    lock.write_text(json.dumps({"host": "elsewhere", "pid": 7, "token": "t", "started": "", "beat": 0}))
    assert point_status(_point(2), run_dir) == "running"  # another node, heartbeat fresh
    os.utime(lock, (time.time() - 100, time.time() - 100))
    assert point_status(_point(2), run_dir) == "partial"


def test_running_the_sweep_trains_a_point_on_only_when_it_asks_for_more_epochs(tmp_path, monkeypatch, lines):

    trained = []

    def train(config, run_dir):
        trained.append(config.training.epochs)
        _recorded(run_dir, None, trained_for=config.training.epochs, finished=config.training.epochs)

    run_dir = tmp_path / "seed=1"
    _recorded(run_dir, "done", trained_for=1, finished=1)
    assert run_point(_point(1), tmp_path, train) == "done" and trained == []
    assert run_point(_point(3), tmp_path, train) == "done" and trained == [3]  # the override dropped: on to 3
    assert "done at 1 epoch; training on to training.epochs=3" in "\n".join(lines)
    assert json.loads((run_dir / STATUS_FILE).read_text())["epochs_done"] == 3
    assert run_point(_point(2), tmp_path, train) == "done" and trained == [3]  # fewer than it has: done
    _recorded(run_dir, "running", trained_for=5, finished=3)
    holder = workdir_lock.acquire(run_dir)
    try:
        assert run_point(_point(5), tmp_path, train) == "running" and trained == [3]  # another process trains it
    finally:
        workdir_lock.release(run_dir, holder)
    assert "is running (a live process holds its run.lock): skipped" in "\n".join(lines)


def test_a_point_another_process_locks_after_this_one_looked_is_left_to_it(tmp_path, lines):
    # Two sweeps started together: the other takes the lock between this one's look (not
    # running) and its own lock. The point is the other's: not marked failed, its record running.
    def train_locked_by_another(config, run_dir):
        with workdir_lock.held(run_dir):  # the other process, which got there first
            train_and_evaluate(config, run_dir)

    assert run_point(_point(1), tmp_path, train_locked_by_another) == "running"
    assert json.loads((tmp_path / "seed=1" / STATUS_FILE).read_text())["status"] == "running"
    assert "is being trained by another process: skipped" in "\n".join(lines)


def test_running_a_sweep_never_imports_training():
    """training | evaluation | sweeps are layers apart: the sweep command hands train_and_evaluate in.
    (sweeps/status.py still reads training.resume's config comparison: being reworked apart.)"""
    for path in (REPO / "jaxpcam" / "sweeps" / "runner.py", REPO / "jaxpcam" / "sweeps" / "driver.py"):
        tree = ast.parse(path.read_text())
        names = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        names += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        assert not [name for name in names if name.startswith("jaxpcam.training")], path


def test_sweeps_keep_one_epoch_end_unless_someone_chose():
    def kept(grid, overrides=None, **file_values) -> int:
        base = base_config()
        base.checkpoint.update(file_values)
        keep_less(base, grid, overrides or {})
        return base.checkpoint.keep

    assert kept({"seed": [1, 2]}) == 1  # left at the default: a sweep keeps less
    assert kept({"seed": [1, 2]}, keep=3) == 3  # the sweep file chose
    assert kept({"seed": [1, 2]}, {"checkpoint.keep": 2}) == 2  # the command line chose
    assert kept({"checkpoint.keep": [2, 4]}) == 2  # the grid chooses per point (the base is untouched)


def test_a_point_run_with_another_base_config_is_refused_listed_and_never_skipped_as_done(tiny_pcam, tmp_path, lines):
    from conftest import tiny_config
    from jaxpcam.sweeps.runner import refuse_other_configs

    def sweep(**overrides):  # the points of `--config.x=y ...` over a grid of two seeds
        return points(tiny_config(tiny_pcam, **{"training.epochs": 1, **overrides}), {"seed": [1, 2]})

    sweep_dir = tmp_path / "sweep"
    run_dir = sweep_dir / "seed=1"
    assert run_point(sweep()[0], sweep_dir, train_and_evaluate) == "done"
    kept = {name: (run_dir / name).read_text() for name in ("metrics.jsonl", "config.json", STATUS_FILE)}
    stained = sweep(**{"data.stain_augment": 0.5})
    assert point_status(stained[0], run_dir) == "other config"  # --list: not `done`
    assert point_status(stained[1], sweep_dir / "seed=2") == "not started"  # nothing there to mistake
    message = r"1 point in .*sweep \(0 \(seed=1\)\) was run with another config \(data.stain_augment 0.0 there, "
    with pytest.raises(
        UserError, match=message + r"0.5 now\): pass the same --config overrides .* another --sweep_dir"
    ):
        refuse_other_configs(stained, sweep_dir)  # --all and --index 0, before any work
    refuse_other_configs(stained[1:], sweep_dir)  # --index 1: nothing was run there
    assert run_point(stained[0], sweep_dir, train_and_evaluate) == "other config"  # never skipped as done
    assert "was run with another config (data.stain_augment 0.0 there, 0.5 now): skipped" in "\n".join(lines)
    markdown, table, champion = summarize(_rows(stained, [run_dir, sweep_dir / "seed=2"]), "best_val_roc_auc", "max")
    assert champion is None and "Point(s) 0 were run with another config" in markdown
    assert next(csv.DictReader(table.splitlines()))["status"] == "other config"
    with pytest.raises(UserError, match=r"\(training.ema_decay 0.0 there, 0.9 now\)"):
        refuse_other_configs(sweep(**{"training.ema_decay": 0.9, "training.epochs": 2}), sweep_dir)
    longer = sweep(**{"training.epochs": 2, "data.num_workers": 1, "training.early_stopping_patience": 3})
    refuse_other_configs(longer, sweep_dir)  # resume's rule: more epochs and neutral keys continue it
    assert point_status(longer[0], run_dir) == "done"
    assert {name: (run_dir / name).read_text() for name in kept} == kept

    # A record from before sweep_point.json held the config, and no config.json: only training can
    # tell (its checkpoints hold stain 0). Its refusal is recorded: --list and the summary then show
    # `other config` to this config, never that run's epochs as its result ('done', or 'partial'
    # with them); to the config it was run with, the point is still done. Not `failed`.
    (run_dir / "config.json").unlink()
    record = json.loads(kept[STATUS_FILE])
    del record["config"]
    (run_dir / STATUS_FILE).write_text(json.dumps(record))
    assert point_status(stained[0], run_dir) == "done"  # nothing says otherwise before training looks
    refused = sweep(**{"data.stain_augment": 0.5, "training.epochs": 2})[0]
    assert run_point(refused, sweep_dir, train_and_evaluate) == "other config"
    after = json.loads((run_dir / STATUS_FILE).read_text())
    assert after["status"] == "other config" and "holds a run with a different config" in after["error"]
    assert {k: v for k, v in after.items() if k not in ("status", "error", "refused_config")} == {
        k: v for k, v in record.items() if k not in ("status", "error")
    }
    assert point_status(stained[0], run_dir) == point_status(refused, run_dir) == "other config"
    assert point_status(sweep()[0], run_dir) == "done"
    assert "move that run aside or choose another --sweep_dir" in lines[-1] and "--start_fresh" not in lines[-1]
    assert (run_dir / "metrics.jsonl").read_text() == kept["metrics.jsonl"]


def test_the_sweep_command_refuses_another_base_config_in_one_line_before_any_work(tmp_path):
    from jaxpcam.config.files import load_config_file

    sweep_file, sweep_dir = tmp_path / "sweep_tiny.py", tmp_path / "sweep"
    sweep_file.write_text(TINY_SWEEP.format(data=str(tmp_path / "data")))
    point = points(load_config_file(str(sweep_file)), load_sweep(sweep_file))[0]
    _recorded(sweep_dir / point.name, "done", trained_for=2, finished=2)  # seed 1, base_config: another config
    listed = _sweep(sweep_file, sweep_dir, "--list")
    assert listed.returncode == 0 and "  0  other config" in listed.stdout, listed.stdout
    everything = _sweep(sweep_file, sweep_dir, "--all")
    error = everything.stderr.strip().splitlines()
    assert everything.returncode == 2 and len(error) == 1 and "Traceback" not in everything.stderr, error
    assert "1 point in " in error[0] and "(0 (optimizer=adam,batch_size=32)) was run with another config (" in error[0]
    assert "seed 1 there, 42 now" in error[0] and "data.dir" in error[0]  # a record without the files it used
    assert sorted(p.name for p in sweep_dir.iterdir()) == [point.name]  # no other point, no summary


def test_a_point_is_judged_by_the_files_its_data_dir_names(tiny_pcam, tmp_path):
    """Another data.dir holding the same training files (a staged copy) is the same config;
    one holding other files, or the same data.dir with its files replaced, is another config."""
    import shutil

    from conftest import tiny_config
    from jaxpcam.data.sample import write_sample
    from jaxpcam.sweeps.runner import refuse_other_configs

    def sweep(data):
        return points(tiny_config(data, **{"training.epochs": 1}), {"seed": [1]})

    sweep_dir = tmp_path / "sweep"
    copy, other = tmp_path / "copy", tmp_path / "other"
    shutil.copytree(tiny_pcam, copy)
    assert run_point(sweep(copy)[0], sweep_dir, train_and_evaluate) == "done"
    write_sample(other, {"train": 256, "valid": 96}, seed=8)
    assert point_status(sweep(tiny_pcam)[0], sweep_dir / "seed=1") == "done"
    assert point_status(sweep(other)[0], sweep_dir / "seed=1") == "other config"
    shutil.rmtree(copy)  # the same data.dir, its files replaced in place
    shutil.copytree(other, copy)
    assert point_status(sweep(copy)[0], sweep_dir / "seed=1") == "other config"
    with pytest.raises(
        UserError,
        match=r"data\.dir '.*copy' there, '.*copy with other files \(camelyonpatch_level_2.*: restore the files it",
    ):
        refuse_other_configs(sweep(copy), sweep_dir)


def test_a_point_whose_manifest_keeps_other_images_is_another_config(tiny_pcam, tmp_path):
    """data.filter trains on the audit's manifest: one that keeps other images since is another
    training set, refused up front like replaced files (before: ranked beside the others)."""
    import shutil

    from conftest import tiny_config
    from jaxpcam import audit as audit_cli
    from jaxpcam.sweeps.runner import refuse_other_configs

    data = tmp_path / "pcam"
    shutil.copytree(tiny_pcam, data)
    assert audit_cli.main([str(data)]) == 0
    grid = points(tiny_config(data, **{"training.epochs": 1, "data.filter": True}), {"seed": [1]})
    sweep_dir = tmp_path / "sweep"
    assert run_point(grid[0], sweep_dir, train_and_evaluate) == "done"
    manifest = data / "jaxpcam-audit" / "manifest_train.json"
    record = json.loads(manifest.read_text())
    record["kept"] = record["kept"][:200]
    manifest.write_text(json.dumps(record))
    assert point_status(grid[0], sweep_dir / "seed=1") == "other config"
    with pytest.raises(
        UserError,
        match=r"data\.filter 'manifest_train\.json as trained' there, .* with other images.*: restore the files",
    ):
        refuse_other_configs(grid, sweep_dir)
