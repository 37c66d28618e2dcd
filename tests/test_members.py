"""Several members (one config, several seeds or learning rates) trained by one compiled step:
each member's run directory is what its own run writes, its numbers equal its own run's."""

import json
import os
import subprocess
import time

import jax
import ml_collections
import numpy as np
import pytest

from conftest import REPO, command, metrics_without_timing, tiny_config
from jaxpcam.config.files import load_config_file
from jaxpcam.core.errors import UserError
from jaxpcam.core.reporting import captured_log
from jaxpcam.data.digits import create_digits_h5
from jaxpcam.run import lock as workdir_lock
from jaxpcam.run.record import read_sweep_point
from jaxpcam.sweeps.grid import points
from jaxpcam.sweeps.status import point_status
from jaxpcam.sweeps.together import member_groups, run_points_together
from jaxpcam.training import bookkeeping, memory
from jaxpcam.training.loop import train_and_evaluate, train_members

TOLERANCE = 1e-4  # batched kernels may round differently from the single run's (the bound)


@pytest.fixture(scope="module")
def digits_file(tmp_path_factory):
    return create_digits_h5(tmp_path_factory.mktemp("digits") / "digits.h5")


def _config(model: str, data, seed: int, **extra) -> ml_collections.ConfigDict:
    if model == "digits":
        config = load_config_file(str(REPO / "configs" / "smlp_digits.py"))
        values = {"data.digits_file": str(data), "training.epochs": 2, "training.log_every_steps": 5}
        config.update_from_flattened_dict({**values, "seed": seed, **extra})
        return config
    return tiny_config(data, model, seed=seed, **extra)


def _largest_difference(a: list[dict], b: list[dict]) -> float:
    assert [r.keys() for r in a] == [r.keys() for r in b]
    worst = 0.0
    for x, y in zip(a, b, strict=True):
        for key in x:
            if isinstance(x[key], float) or isinstance(y[key], float):
                worst = max(worst, abs(x[key] - y[key]))
            else:
                assert x[key] == y[key], key
    return worst


def _final_params(workdir):
    import orbax.checkpoint as ocp

    manager = ocp.CheckpointManager((workdir / "checkpoints").resolve())
    step = manager.latest_step()
    restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore())).state
    manager.close()
    return step, jax.tree.map(np.asarray, restored["params"])


def _files(workdir) -> set[str]:
    return {p.name.split(".")[0] if p.name.startswith("events") else p.name for p in workdir.iterdir()}


_ALONE = {}  # (model, seed) -> the run directory of that seed trained alone, shared by the layouts


def _alone(model, data, seed, tmp_path_factory):
    if (model, seed) not in _ALONE:
        workdir = tmp_path_factory.mktemp(f"alone-{model}-{seed}")
        train_and_evaluate(_config(model, data, seed), workdir)
        _ALONE[model, seed] = workdir
    return _ALONE[model, seed]


@pytest.fixture(params=["vmap", "one_after_another"])
def layout(request):
    """Both ways members train together (training.member_layout)."""
    return request.param


@pytest.mark.parametrize("model", ["mlp", "cnn", "digits"])
def test_each_member_equals_its_own_run(model, layout, tiny_pcam, digits_file, tmp_path, tmp_path_factory):
    data = digits_file if model == "digits" else tiny_pcam
    seeds = (42, 43)
    configs = [_config(model, data, seed, **{"training.member_layout": layout}) for seed in seeds]
    with captured_log() as lines:
        summaries = train_members(configs, [tmp_path / f"member{seed}" for seed in seeds])
    how = "one after another" if layout == "one_after_another" else "vmap"
    assert any(f"compiled the train step of 2 members ({how} in one step)" in line for line in lines)
    assert [s["epochs"] for s in summaries] == [2, 2]
    starts = [x for x in lines if " data " in x or x.startswith("data ")]  # each member's start-up reads its data
    assert len(starts) == 2 and all(x.startswith(f"[seed {s}, lr ") for x, s in zip(starts, seeds, strict=True))
    for seed in seeds:
        alone, member = _alone(model, data, seed, tmp_path_factory), tmp_path / f"member{seed}"
        assert json.loads((member / "config.json").read_text())["config"]["seed"] == seed
        assert _files(member) == _files(alone)  # config.json, metrics.jsonl, checkpoints, events, run.lock
        worst = _largest_difference(metrics_without_timing(member), metrics_without_timing(alone))
        print(f"{model} {layout} seed {seed}: largest metrics.jsonl difference {worst:.3g}")
        assert worst <= TOLERANCE
        (step_a, a), (step_b, b) = _final_params(alone), _final_params(member)
        pairs = list(zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))
        assert step_a == step_b and max(float(np.max(np.abs(x - y))) for x, y in pairs) < 1e-3
        if layout == "one_after_another":  # the single run's kernels: bit for bit
            assert metrics_without_timing(member) == metrics_without_timing(alone)
            assert all(np.array_equal(x, y) for x, y in pairs)
    assert metrics_without_timing(tmp_path / "member42") != metrics_without_timing(tmp_path / "member43")


def test_vectorized_twins_are_identical(layout, tiny_pcam, tmp_path):
    for twin in ("a", "b"):
        extra = {"model.dropout_rate": 0.3, "training.member_layout": layout}
        configs = [tiny_config(tiny_pcam, seed=seed, **extra) for seed in (1, 2, 3)]
        train_members(configs, [tmp_path / twin / str(seed) for seed in (1, 2, 3)])
    for seed in (1, 2, 3):
        a, b = tmp_path / "a" / str(seed), tmp_path / "b" / str(seed)
        assert metrics_without_timing(a) == metrics_without_timing(b)
        (step_a, pa), (step_b, pb) = _final_params(a), _final_params(b)
        assert step_a == step_b and all(jax.tree.leaves(jax.tree.map(np.array_equal, pa, pb)))


def test_per_member_rates_plateau_and_early_stopping(tiny_pcam, tmp_path):
    # One member learns (its plateau schedule decides for itself), the other hardly moves, ties
    # its first val_accuracy and stops early: it stops updating and saving, the first goes on.
    extra = {
        "training.epochs": 4,
        "training.scheduler": "plateau",
        "training.plateau_patience": 0,
        "training.plateau_threshold": 0.5,  # only halving val_loss counts as better: the rate drops
        "training.early_stopping_patience": 2,
        "checkpoint.best_metric": "val_accuracy",
    }
    rates = (1e-3, 1e-12)
    configs = [tiny_config(tiny_pcam, **{**extra, "training.learning_rate": lr}) for lr in rates]
    for lr, config in zip(rates, configs, strict=True):
        train_and_evaluate(config, tmp_path / f"alone{lr:g}")
    train_members(configs, [tmp_path / f"member{lr:g}" for lr in rates])
    for lr in rates:
        alone, member = tmp_path / f"alone{lr:g}", tmp_path / f"member{lr:g}"
        assert _largest_difference(metrics_without_timing(member), metrics_without_timing(alone)) <= TOLERANCE
    stopped = metrics_without_timing(tmp_path / "member1e-12")
    assert [r["epoch"] for r in stopped] == [1, 2, 3] and stopped[-1]["stopped_early"] is True
    assert _final_params(tmp_path / "member1e-12")[0] == 3 * 8  # no update or save after it stopped
    learner = metrics_without_timing(tmp_path / "member0.001")
    assert len(learner) == 4 and len({r["lr"] for r in learner}) > 1  # its own plateau decisions


def test_members_share_one_clock(tiny_pcam, tmp_path, monkeypatch):
    # Each member's epoch end (validation and save) takes 100 s on a clock that runs only there.
    # The members end their epochs one after another, so a member's img/s must count none of
    # that (the others' included), and its run ETA must count the whole group's epoch end.
    offset, real = [0.0], time.perf_counter
    monkeypatch.setattr(time, "perf_counter", lambda: real() + offset[0])
    end_epoch = bookkeeping.end_epoch

    def slow_end_epoch(*args, **kwargs):
        record = end_epoch(*args, **kwargs)
        offset[0] += 100.0
        return record

    monkeypatch.setattr(bookkeeping, "end_epoch", slow_end_epoch)
    configs = [tiny_config(tiny_pcam, seed=seed) for seed in (1, 2, 3)]
    with captured_log() as lines:
        train_members(configs, [tmp_path / str(seed) for seed in (1, 2, 3)])
    for seed in (1, 2, 3):
        records = [json.loads(x) for x in (tmp_path / str(seed) / "metrics.jsonl").read_text().splitlines()]
        assert len(records) == 2 and all(r["images_per_second"] > 256 / 50 for r in records)  # 8 steps of 32
    shown = [x.split(" img/s (last ")[0].rsplit(" ", 1)[1] for x in lines if "img/s (last" in x]
    windows = [float(rate.replace(",", "")) for rate in shown]
    assert len(windows) == 3 * 2 * 3 and min(windows) > 32 / 50  # every window's rate, no 100 s in any
    by_step = {}
    for line, rate in zip([x for x in lines if "img/s (last" in x], shown, strict=True):
        by_step.setdefault(line.split("(global ")[1].split(")")[0], []).append(rate)
    assert all(len(set(rates)) == 1 for rates in by_step.values())  # the same steps: the same rate for each
    second_epoch = [x for x in lines if "epoch 2/2 step 3/8" in x]
    assert len(second_epoch) == 3 and all("run 0:05:" in x for x in second_epoch)  # 1 epoch end left: 300 s


def test_members_that_do_not_fit_train_in_groups(tiny_pcam, tmp_path, monkeypatch):
    configs = [tiny_config(tiny_pcam, seed=seed) for seed in (1, 2, 3)]
    together = tmp_path / "together"
    train_members(configs, [together / str(seed) for seed in (1, 2, 3)])
    # room for two members, not three: 1 GiB free (so the single-run check passes), and each member
    # "needs" half of that plus what the first one's state holds
    monkeypatch.setattr(memory, "free_device_memory", lambda devices: memory.GIB)
    monkeypatch.setattr(memory, "MEMBERS_SHARE", 1.0)
    monkeypatch.setattr(memory, "member_bytes", lambda run: (memory.GIB + memory.tree_bytes(run.state)) // 2)
    with captured_log() as lines:
        train_members(configs, [tmp_path / "split" / str(seed) for seed in (1, 2, 3)])
    assert any("3 members do not fit the device together" in x and "2 groups of at most 2" in x for x in lines)
    assert sum("compiled the train step of 2 members" in x for x in lines) == 1
    assert sum(x.startswith("compiled the train step in") for x in lines) == 1  # the third alone
    for seed in (1, 2, 3):
        split = metrics_without_timing(tmp_path / "split" / str(seed))
        assert _largest_difference(split, metrics_without_timing(together / str(seed))) <= TOLERANCE


def test_a_point_another_process_locks_first_is_left_to_it(tiny_pcam, tmp_path):
    # Two --vectorize commands started together: the other takes point 1's lock after this one
    # looked at it and before this one locks it. This one trains the two others, leaves point 1
    # to the other process (its record says running), and marks nothing failed.
    grid = points(tiny_config(tiny_pcam), {"seed": [1, 2, 3]})
    busy = tmp_path / grid[1].name

    def another_process_takes_point_1(configs, workdirs):
        with workdir_lock.held(busy):
            return train_members(configs, workdirs)

    assert run_points_together(grid, tmp_path, another_process_takes_point_1) == ["done", "running", "done"]
    assert read_sweep_point(busy)["status"] == "running" and not (busy / "metrics.jsonl").exists()
    assert [len(metrics_without_timing(tmp_path / grid[i].name)) for i in (0, 2)] == [2, 2]
    assert run_points_together(grid, tmp_path, train_members) == ["done", "done", "done"]  # later: it trains it


def test_a_member_whose_checkpoints_hold_another_config_is_left_out(tiny_pcam, tmp_path):
    # Point 1's config.json matches, its checkpoints were made with another learning rate: that
    # point alone is refused (as without --vectorize), the others train, its files stay as they were.
    grid = points(tiny_config(tiny_pcam), {"seed": [1, 2, 3]})
    other, reference = tmp_path / grid[1].name, tmp_path / "reference"
    train_and_evaluate(tiny_config(tiny_pcam, seed=2, **{"training.learning_rate": 5e-3, "training.epochs": 1}), other)
    train_and_evaluate(tiny_config(tiny_pcam, seed=2), reference)  # for its config.json: point 1's config
    (other / "config.json").write_bytes((reference / "config.json").read_bytes())
    kept = {f: f.read_bytes() for f in (other / "metrics.jsonl", other / "config.json")}
    with captured_log() as lines:
        assert run_points_together(grid, tmp_path, train_members) == ["done", "other config", "done"]
    assert any("point 1 (seed=2) was run with another config" in x and "training.learning_rate" in x for x in lines)
    assert all(f.read_bytes() == content for f, content in kept.items())
    assert point_status(grid[1], other) == "other config"  # never listed with that run's epochs as its own
    assert [len(metrics_without_timing(tmp_path / grid[i].name)) for i in (0, 2)] == [2, 2]


def test_members_may_differ_only_in_seed_and_learning_rate(tiny_pcam, tmp_path):
    configs = [tiny_config(tiny_pcam, seed=1), tiny_config(tiny_pcam, seed=2, **{"data.batch_size": 64})]
    with pytest.raises(UserError, match=r"may differ only in seed and training.learning_rate.*data.batch_size"):
        train_members(configs, [tmp_path / "a", tmp_path / "b"])
    base = tiny_config(tiny_pcam)
    grid = points(base, {"training.learning_rate": [1e-3, 1e-4], "seed": [1, 2], "training.optimizer": ["adam", "sgd"]})
    assert [[p.index for p in g] for g in member_groups(grid)] == [[0, 2, 4, 6], [1, 3, 5, 7]]


SEEDS_SWEEP = """
from jaxpcam.config import base_config

def get_config():
    config = base_config()
    config.experiment_name = "tiny_seeds"
    config.data.dir = {data!r}
    config.data.batch_size = 32
    config.data.eval_batch_size = 48
    config.model.hidden_units = (16,)
    config.training.epochs = 2
    config.training.log_every_steps = 4
    config.checkpoint.every_steps = 3
    return config

def get_sweep():
    return {{"seed": [1, 2, 3]}}
"""


def _sweep(path, sweep_dir, *args, kill_after_save=None):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    argv = command("jaxpcam.sweep", [f"--config={path}", f"--sweep_dir={sweep_dir}", *args], kill_after_save)
    return subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_a_vectorized_sweep_killed_and_resumed_equals_one_never_interrupted(tiny_pcam, tmp_path):
    sweep_file = tmp_path / "seeds.py"
    sweep_file.write_text(SEEDS_SWEEP.format(data=str(tiny_pcam)))
    whole = _sweep(sweep_file, tmp_path / "whole", "--all", "--vectorize")
    assert whole.returncode == 0, whole.stderr[-3000:]
    assert "training 3 points together" in whole.stderr and "compiled the train step of 3 members" in whole.stderr
    killed = _sweep(sweep_file, tmp_path / "killed", "--all", "--vectorize", kill_after_save=9)
    assert killed.returncode != 0  # SIGKILL as the first member's step-9 save starts (mid epoch 2)
    resumed = _sweep(sweep_file, tmp_path / "killed", "--all", "--vectorize")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from checkpoint step" in resumed.stderr
    for seed in (1, 2, 3):
        a, b = tmp_path / "whole" / f"seed={seed}", tmp_path / "killed" / f"seed={seed}"
        assert metrics_without_timing(a) == metrics_without_timing(b)
        (step_a, pa), (step_b, pb) = _final_params(a), _final_params(b)
        assert step_a == step_b == 16 and all(jax.tree.leaves(jax.tree.map(np.array_equal, pa, pb)))
        assert json.loads((b / "sweep_point.json").read_text())["status"] == "done"
    summary = _sweep(sweep_file, tmp_path / "killed", "--summary")
    assert summary.returncode == 0 and summary.stdout.count("| done |") == 3


def _scalars(workdir, tag: str) -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(workdir))
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars(tag)]


def _checkpoint_steps(workdir) -> list[int]:
    return sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_k_steps_per_dispatch_train_exactly_as_one(model, tiny_pcam, tmp_path):
    # 8 steps an epoch, a sync every 3, a checkpoint every 5: chunks of 4 are cut at all of them
    extra = {"training.log_every_steps": 3, "checkpoint.every_steps": 5, "checkpoint.keep": 5}
    train_and_evaluate(tiny_config(tiny_pcam, model, **extra), tmp_path / "one")
    with captured_log() as lines:
        train_and_evaluate(tiny_config(tiny_pcam, model, **extra, **{"training.steps_per_dispatch": 4}), tmp_path / "k")
    assert any("steps per call" in line for line in lines)
    one, k = tmp_path / "one", tmp_path / "k"
    assert metrics_without_timing(k) == metrics_without_timing(one)
    for tag in ("train/loss", "train/grad_norm", "train/lr"):
        assert _scalars(k, tag) == _scalars(one, tag) and len(_scalars(k, tag)) == 16
    assert _checkpoint_steps(k) == _checkpoint_steps(one)
    (step_a, a), (step_b, b) = _final_params(one), _final_params(k)
    assert step_a == step_b == 16 and all(jax.tree.leaves(jax.tree.map(np.array_equal, a, b)))


def test_k_steps_per_dispatch_with_members(layout, tiny_pcam, tmp_path):
    for k in (1, 3):
        extra = {"training.steps_per_dispatch": k, "training.member_layout": layout}
        configs = [tiny_config(tiny_pcam, seed=seed, **extra) for seed in (1, 2)]
        train_members(configs, [tmp_path / str(k) / str(seed) for seed in (1, 2)])
    for seed in (1, 2):
        assert metrics_without_timing(tmp_path / "3" / str(seed)) == metrics_without_timing(tmp_path / "1" / str(seed))


def test_vectorize_goes_with_all(tmp_path):
    refused = _sweep(REPO / "configs" / "sweep_seeds.py", tmp_path, "--index", "0", "--vectorize")
    assert refused.returncode == 2 and "--vectorize trains points together: use it with --all" in refused.stderr
