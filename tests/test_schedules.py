import math

import pytest

from jaxpcam.config import base_config
from jaxpcam.training.schedules import ScheduleState, init_schedule, update_schedule


def _run(losses, **training):
    t = base_config().training
    t.update(training)
    s = init_schedule(t)
    lrs = []
    for loss in losses:
        s = update_schedule(s, t, loss)
        lrs.append(s.lr)
    return lrs, s


def test_step_decay_matches_torch_steplr():
    # torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.1), lr=1e-3, after each epoch:
    lrs, _ = _run([0.0] * 6, scheduler="step", learning_rate=1e-3, step_size=2, gamma=0.1)
    expected, lr = [], 1e-3
    for epoch in range(1, 7):
        lr = lr * 0.1 if epoch % 2 == 0 else lr  # torch multiplies the current lr (chainable form)
        expected.append(lr)
    assert lrs == expected


def test_none_keeps_the_rate():
    lrs, s = _run([1.0, 0.5, 2.0], scheduler="none", learning_rate=3e-4)
    assert lrs == [3e-4] * 3 and s.epochs_done == 3


def test_plateau_reduces_when_bad_epochs_exceed_patience_like_torch():
    # patience=2: torch reduces on the 3rd consecutive bad epoch, not the 2nd (optax does).
    losses = [1.0, 0.9, 0.95, 0.95, 0.95, 0.95, 0.95, 0.95]
    lrs, _ = _run(losses, scheduler="plateau", learning_rate=1.0, plateau_patience=2, plateau_factor=0.5)
    assert lrs == [1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25]


def test_plateau_relative_threshold_counts_tiny_gains_as_bad():
    # 0.99995 is not below 1.0 * (1 - 1e-4): a bad epoch, as in torch's rel mode.
    lrs, s = _run([1.0, 0.99995], scheduler="plateau", learning_rate=1.0, plateau_patience=0)
    assert lrs == [1.0, 0.1] and s.best == 1.0


def test_plateau_cooldown_min_lr_and_eps():
    kw = dict(scheduler="plateau", learning_rate=1.0, plateau_patience=0, plateau_factor=0.1, plateau_cooldown=1)
    lrs, _ = _run([1.0, 2.0, 2.0, 2.0, 2.0], min_lr=0.005, **kw)
    # bad -> reduce (cooldown 1); cooldown epoch resets bad count; bad -> reduce to min_lr; ...
    assert lrs == [1.0, 0.1, 0.1, 0.1 * 0.1, 0.1 * 0.1]  # torch's float64 chain, not 0.01
    lrs, _ = _run([1.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0], min_lr=0.005, **kw)
    assert lrs[-1] == 0.005
    # torch skips reductions smaller than eps=1e-8
    lrs, _ = _run([1.0, 2.0], scheduler="plateau", learning_rate=1e-8, plateau_patience=0, plateau_factor=0.5)
    assert lrs == [1e-8, 1e-8]


def test_nan_loss_is_a_bad_epoch():
    lrs, s = _run([1.0, math.nan], scheduler="plateau", learning_rate=1.0, plateau_patience=0)
    assert lrs == [1.0, 0.1] and s.best == 1.0


@pytest.mark.parametrize("best", [math.inf, 0.25])
def test_schedule_state_round_trips_through_json_dicts(best):
    s = ScheduleState(lr=1e-3, epochs_done=4, best=best, num_bad_epochs=1, cooldown_counter=2)
    assert ScheduleState.from_dict(s.to_dict()) == s
