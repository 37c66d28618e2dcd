import itertools
import math

import numpy as np
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


def _rates(steps, epoch_lr=1e-3, **training):
    from jaxpcam.training.schedules import step_rate

    t = base_config().training
    t.update({"epochs": 3, **training})
    rate = step_rate(t, steps_per_epoch=10)  # 30 steps in all
    return [float(rate(s, epoch_lr)) for s in steps], rate


def test_no_per_step_rate_by_default():
    from jaxpcam.training.schedules import step_rate

    t = base_config().training
    for scheduler in ("none", "step", "plateau"):
        t.scheduler = scheduler
        assert step_rate(t, 10) is None  # the epoch rate alone, as before: same program, same bits


def test_cosine_with_warmup_values_at_chosen_steps():
    # Update u = step + 1 uses lr * u / warmup while u < warmup, then half a cosine from lr at
    # u = warmup to min_lr at u = 30, the run's last update.
    steps = [0, 1, 3, 4, 16, 29]
    rates, _ = _rates(steps, scheduler="cosine", warmup_steps=5, min_lr=1e-5)
    lr, low = np.float32(1e-3), np.float32(1e-5)
    assert rates[0] == np.float32(lr * np.float32(1 / 5))  # first update: lr / warmup, not 0
    assert rates[1] == pytest.approx(4e-4, rel=1e-6)  # u = 2
    assert rates[2] == pytest.approx(8e-4, rel=1e-6)  # u = 4, the last warmup update
    assert rates[3] == lr  # u = warmup: the full rate
    assert rates[4] == pytest.approx(1e-5 + (1e-3 - 1e-5) * 0.5 * (1 + math.cos(math.pi * 12 / 25)), rel=1e-5)
    assert rates[5] == low  # the last update uses min_lr exactly
    assert all(a >= b for a, b in itertools.pairwise(rates[3:]))


def test_cosine_without_warmup_starts_near_the_full_rate():
    rates, _ = _rates([0, 14, 29], scheduler="cosine", warmup_steps=0, min_lr=0.0)
    assert rates[0] == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi / 30)), rel=1e-6)
    assert rates[1] == pytest.approx(5e-4, rel=1e-5)  # halfway
    assert rates[2] == 0.0


def test_warmup_scales_the_epoch_rate_of_the_other_schedulers():
    # step/plateau/none keep deciding the epoch rate on the host; warmup multiplies it.
    rates, _ = _rates([0, 2, 3, 20], epoch_lr=0.5, scheduler="step", warmup_steps=4)
    assert rates == [0.125, 0.375, 0.5, 0.5]


def test_step_rate_is_hashable_for_jit():
    _, rate = _rates([0], scheduler="cosine", warmup_steps=2)
    assert hash(rate) == hash(_rates([0], scheduler="cosine", warmup_steps=2)[1])


def test_a_warmup_as_long_as_the_run_is_warned_about(messages):
    from jaxpcam.config import base_config
    from jaxpcam.training.setup import _warn_long_warmup

    t = base_config().training
    t.epochs, t.warmup_steps = 2, 500  # the recipe's warmup on a 160-step sample run
    _warn_long_warmup(t, 80)
    assert messages == [
        "WARNING: training.warmup_steps=500 is not shorter than the run (160 steps): "
        "the rate peaks at 0.00032, never training.learning_rate=0.001"
    ]
    messages.clear()
    _warn_long_warmup(t, 500)
    assert messages == []
