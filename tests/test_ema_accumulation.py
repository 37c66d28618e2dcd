"""training.ema_decay (a moving average of the params, used for validation, evaluate and predict)
and training.grad_accum_steps (one update from k micro-batches)."""

import json
import re
import signal

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from sklearn.metrics import roc_auc_score

from conftest import metrics_without_timing, run_main, tiny_config, tiny_overrides, train_in_process
from jaxpcam.config import base_config
from jaxpcam.config.checks import validate
from jaxpcam.core.errors import UserError
from jaxpcam.core.reporting import captured_log
from jaxpcam.data.normalization import fixed_normalization
from jaxpcam.evaluation.data import open_eval_split
from jaxpcam.evaluation.evaluate import EvalOptions, predict_split
from jaxpcam.evaluation.loading import load_run
from jaxpcam.models import create_model
from jaxpcam.training import ema
from jaxpcam.training.loop import train_and_evaluate
from jaxpcam.training.state import EmaTrainState, TrainState, create_train_state, make_optimizer
from jaxpcam.training.steps import eval_step, train_step


def _state(ema_decay=0.0, dropout=0.0, **training):
    config = base_config()
    config.model.hidden_units = (8,)
    config.model.dropout_rate = dropout
    config.training.update(training)
    model = create_model(config.model)
    tx = make_optimizer(config.training)
    return create_train_state(jax.random.key(0), model, tx, fixed_normalization(), (8, 8, 3), ema_decay)


def _batch(n=32, seed=0):
    rng = np.random.default_rng(seed)
    images = jnp.asarray(rng.integers(0, 256, (n, 8, 8, 3)), jnp.uint8)
    return {"image": images, "label": jnp.asarray(rng.integers(0, 2, n), jnp.int32), "mask": jnp.ones(n, bool)}


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


# EMA


def test_ema_starts_at_the_initial_params_and_follows_with_the_warmup_decay():
    state = _state(ema_decay=0.5)
    assert isinstance(state, EmaTrainState)
    expected = _leaves(state.params)  # the EMA starts at the initial params
    for step in range(3):
        state, _ = train_step(state, _batch(seed=step), jax.random.key(1))
        d = min(0.5, (1 + step) / (10 + step))  # 0.1, 0.18..., 0.25: the warmup, below 0.5
        expected = [d * e + (1 - d) * p for e, p in zip(expected, _leaves(state.params), strict=True)]
        for got, want in zip(_leaves(state.ema_params), expected, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    assert float(ema.decay_at(0.5, 100)) == 0.5  # after the warmup: the configured decay
    assert not np.allclose(_leaves(state.ema_params)[1], _leaves(state.params)[1])


def test_eval_step_uses_the_ema_weights():
    state, _ = train_step(_state(ema_decay=0.9), _batch(), jax.random.key(1))
    batch = _batch(seed=5)
    fields = {k: v for k, v in vars(state).items() if not k.startswith("ema")}
    raw, averaged = TrainState(**fields), TrainState(**{**fields, "params": state.ema_params})
    with_ema = eval_step(state, batch).probs
    np.testing.assert_array_equal(with_ema, eval_step(averaged, batch).probs)
    assert not np.allclose(with_ema, eval_step(raw, batch).probs)


def test_a_skipped_step_leaves_the_ema_unchanged():
    state, _ = train_step(_state(ema_decay=0.9), _batch(), jax.random.key(1))
    poisoned = state.replace(params=jax.tree.map(lambda p: p.at[...].set(jnp.nan), state.params))
    new, metrics = train_step(poisoned, _batch(seed=2), jax.random.key(1), skip_nonfinite=True)
    assert bool(metrics.skipped)
    for a, b in zip(_leaves(new.ema_params), _leaves(state.ema_params), strict=True):
        np.testing.assert_array_equal(a, b)


def test_without_ema_the_state_keeps_the_layout_of_checkpoints_written_before_ema(tmp_path):
    """Orbax records even a None field: the state without EMA must be exactly the old one, or
    checkpoints written before EMA existed no longer restore (they would be set aside as damaged)."""
    state = _state()
    assert type(state) is TrainState
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(tmp_path / "state", state)
    metadata = ocp.StandardCheckpointer().metadata(tmp_path / "state").item_metadata
    assert set(metadata.tree.keys()) == {"step", "params", "opt_state", "normalization"}


# Gradient accumulation


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_k_micro_batches_give_the_update_of_one_batch_of_k_times_b(optimizer):
    """One update from 4 micro-batches of 8 equals one from the batch of 32, up to float rounding
    (the gradient is summed in another order). SGD is linear in the gradient: tight tolerance;
    Adam's first step is about lr * sign(g), so elements with g near 0 may differ by up to lr."""
    state = _state(optimizer=optimizer, momentum=0.0, learning_rate=0.1)
    batch, key = _batch(32), jax.random.key(1)
    whole, m1 = train_step(state, batch, key)
    accumulated, m4 = jax.jit(train_step, static_argnames="accum_steps")(state, batch, key, accum_steps=4)
    np.testing.assert_allclose(float(m4.loss), float(m1.loss), rtol=1e-6)
    np.testing.assert_allclose(float(m4.grad_norm), float(m1.grad_norm), rtol=1e-5)
    atol = 1e-6 if optimizer == "sgd" else 0.1 * 1e-3
    for a, b in zip(_leaves(accumulated.params), _leaves(whole.params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=atol)
    assert int(accumulated.step) == 1  # one optimizer update, not four
    assert int(m4.count) == int(m1.count) == 32 and int(m4.correct) == int(m1.correct)  # train accuracy


def test_accumulation_trains_like_the_big_batch_end_to_end(tiny_pcam, tmp_path):
    """The stream hands each step the k*b records a batch-of-k*b run reads: same steps, same data,
    losses equal up to float rounding (no dropout, no augmentation randomness in the model)."""
    common = {"model.dropout_rate": 0.0, "training.optimizer": "sgd", "training.momentum": 0.0}
    big, micro = tmp_path / "big", tmp_path / "micro"
    train_in_process(big, tiny_pcam, **common)
    lines = train_in_process(micro, tiny_pcam, **common, **{"data.batch_size": 8, "training.grad_accum_steps": 4})
    assert any("4 micro-batches of 8 per update (effective batch 32)" in line for line in lines)
    a, b = metrics_without_timing(big), metrics_without_timing(micro)
    assert [r["step"] for r in a] == [r["step"] for r in b] == [8, 16]  # steps count optimizer updates
    for ra, rb in zip(a, b, strict=True):
        for key in ("train_loss", "val_loss", "val_roc_auc"):
            np.testing.assert_allclose(rb[key], ra[key], rtol=1e-4, err_msg=key)
        assert abs(rb["train_accuracy"] - ra["train_accuracy"]) <= 1 / 256  # a borderline image at most


# Both, end to end


def test_ema_run_validates_saves_and_evaluates_with_the_ema_weights(tiny_pcam, tmp_path):
    workdir = tmp_path / "run"
    lines = train_in_process(workdir, tiny_pcam, **{"training.ema_decay": 0.9})
    assert sum("validating with EMA weights (decay 0.9)" in line for line in lines) == 1
    run = load_run(workdir, "latest")
    assert run.ema_decay == 0.9 and run.weights_note == ", EMA weights (decay 0.9)"
    restored = ocp.CheckpointManager((workdir / "checkpoints").resolve()).restore(run.step)
    for a, b in zip(_leaves(run.params), _leaves(restored.state["ema_params"]), strict=True):
        np.testing.assert_array_equal(a, b)  # the checkpoint's EMA, not its raw params
    assert not np.array_equal(_leaves(run.params)[0], _leaves(restored.state["params"])[0])
    # evaluate/predict score exactly what validation scored: the logged val_roc_auc comes back
    predictions = predict_split(run, open_eval_split(run.config, "valid"), EvalOptions())
    auc = roc_auc_score(predictions.labels, predictions.probs)
    assert auc == pytest.approx(metrics_without_timing(workdir)[-1]["val_roc_auc"], abs=1e-6)


def test_a_resume_with_another_ema_decay_is_refused_before_any_line_about_the_run(tiny_pcam, tmp_path):
    """Hostile tryout: the refusal came after 'validating with EMA weights (decay 0.5)', which reads
    as the change accepted. Refused, a resume says nothing before its error line (the command prints
    the UserError after every line logged here); accepted, it says it resumes, then what it uses."""
    workdir = tmp_path / "run"
    train_in_process(workdir, tiny_pcam, **{"training.ema_decay": 0.9, "training.epochs": 1})
    changed = tiny_config(tiny_pcam, **{"training.ema_decay": 0.5, "training.epochs": 1})
    with captured_log() as lines, pytest.raises(UserError, match=r"a different config \(training\.ema_decay\)"):
        train_and_evaluate(changed, workdir)
    assert lines == []  # not the data, its placement, the devices, nor the EMA weights
    lines = train_in_process(workdir, tiny_pcam, **{"training.ema_decay": 0.9, "training.epochs": 1})
    resuming = [i for i, line in enumerate(lines) if line.startswith("resuming from checkpoint step 8 ")]
    ema_line = [i for i, line in enumerate(lines) if line == "validating with EMA weights (decay 0.9)"]
    assert len(resuming) == len(ema_line) == 1 and resuming[0] < ema_line[0], lines
    assert any("nothing to do" in line for line in lines)  # the same config: the run had finished


def test_kill_and_resume_with_ema_and_accumulation_is_bit_identical(tiny_pcam, tmp_path):
    """The accumulator lives inside the step, so every checkpoint falls on an update; the EMA is
    in the checkpoint. A run killed as the mid-epoch step-11 save starts resumes bit for bit."""
    extra = {"training.ema_decay": 0.8, "training.grad_accum_steps": 2, "data.batch_size": 16}
    extra.update({"checkpoint.every_steps": 3, "training.log_every_steps": 1})
    reference = tmp_path / "reference"
    train_in_process(reference, tiny_pcam, **extra)
    workdir = tmp_path / "run"
    args = ["--config", "configs/mlp.py", f"--workdir={workdir}", *tiny_overrides(tiny_pcam, **extra)]
    killed = run_main(args, kill_after_save=12)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    finished = run_main(args)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert re.search(r"resuming from checkpoint step (9|12) ", finished.stderr), finished.stderr[-2000:]
    assert metrics_without_timing(workdir) == metrics_without_timing(reference)
    final = [ocp.CheckpointManager((d / "checkpoints").resolve()) for d in (workdir, reference)]
    states = [m.restore(m.latest_step()).state for m in final]
    for name in ("params", "ema_params"):
        for a, b in zip(_leaves(states[0][name]), _leaves(states[1][name]), strict=True):
            np.testing.assert_array_equal(a, b)


# Config


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("ema_decay", 1.0, r"training\.ema_decay: expected a value in \[0, 1\)"),
        ("ema_decay", -0.1, r"training\.ema_decay: expected a value in \[0, 1\)"),
        ("grad_accum_steps", 0, r"training\.grad_accum_steps: expected an integer in \[1, 65536\]"),
    ],
)
def test_bad_values_are_one_line(key, value, message):
    config = base_config()
    config.training[key] = value
    with pytest.raises(UserError, match=message) as err:
        validate(config)
    assert "\n" not in str(err.value)


def test_an_effective_batch_larger_than_the_data_is_refused(tiny_pcam, tmp_path):
    with pytest.raises(UserError, match=r"data\.batch_size: 128 x training\.grad_accum_steps 4 = 512 is larger"):
        train_in_process(tmp_path / "run", tiny_pcam, **{"data.batch_size": 128, "training.grad_accum_steps": 4})
    assert json.dumps(tiny_config(tiny_pcam).to_dict())  # the tiny config itself is fine
