import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxpcam.config import base_config
from jaxpcam.core.seeds import make_streams
from jaxpcam.core.task import PCAM_ONE_LOGIT, Task
from jaxpcam.data.normalization import fixed_normalization
from jaxpcam.models import create_model, model_defaults
from jaxpcam.training.state import create_train_state, make_optimizer
from jaxpcam.training.steps import eval_step, jit_train_step, train_step

SMALL = {"mlp": {"hidden_units": (8,)}, "cnn": {"conv_features": (4, 8), "hidden_units": (8,)}}
SMALL["resnet"] = {"conv_features": (4, 8), "resnet_blocks": (1, 1)}


def _state(name="mlp", **training):
    config = base_config()
    config.training.update(training)
    model = create_model({"name": name, **model_defaults(name), **SMALL[name]}, config.training.dtype)
    return create_train_state(jax.random.key(0), model, make_optimizer(config.training), fixed_normalization())


def _batch(n=8, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "image": rng.integers(0, 256, (n, 96, 96, 3), dtype=np.uint8),
        "label": rng.integers(0, 2, n).astype(np.int32),
        "mask": np.ones(n, bool),
    }


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_train_step_lowers_the_loss_on_a_fixed_batch(name):
    state, batch, key = _state(name), _batch(), jax.random.key(1)
    losses = []
    for _ in range(20):
        state, metrics = jit_train_step(state, batch, key)
        losses.append(float(metrics.loss))
    assert losses[-1] < 0.7 * losses[0]
    assert int(state.step) == 20


def test_resnet_trains_and_pools_to_one_logit_per_image():
    """Random labels on noise are not learnable through global pooling; a class-dependent
    brightness is, so the loss must fall when gradients reach every stage."""
    state, batch, key = _state("resnet", learning_rate=3e-3), _batch(), jax.random.key(1)
    images = batch["image"].astype(np.int16) // 2 + 64 + 64 * batch["label"][:, None, None, None]
    batch = {**batch, "image": images.astype(np.uint8)}
    assert state.apply_fn({"params": state.params}, jnp.zeros((3, 96, 96, 3)), train=False).shape == (3, 1)
    losses = []
    for _ in range(20):
        state, metrics = jit_train_step(state, batch, key)
        losses.append(float(metrics.loss))
    assert losses[-1] < 0.7 * losses[0]


def test_metrics_report_global_grad_norm_before_clipping_and_the_lr_used():
    state, batch, key = _state(grad_clip_norm=1e-3, learning_rate=0.02), _batch(), jax.random.key(1)

    def loss_fn(params):
        images = (batch["image"].astype(jnp.float32) - 127.5) / 127.5
        logits = state.apply_fn({"params": params}, images, train=True, rngs={"dropout": jax.random.fold_in(key, 0)})
        return PCAM_ONE_LOGIT.loss(logits, batch["label"]).mean()

    grads = jax.grad(loss_fn)(state.params)
    _, metrics = train_step(state, batch, key)
    np.testing.assert_allclose(metrics.grad_norm, optax.tree.norm(grads), rtol=1e-5)
    assert float(metrics.grad_norm) > 1e-3  # so clipping was active, and the norm is pre-clip
    assert float(metrics.lr) == np.float32(0.02)


def test_injected_learning_rate_drives_the_update():
    state, batch, key = _state(optimizer="sgd", momentum=0.0), _batch(), jax.random.key(1)
    moved = {}
    for lr in (0.1, 0.0):
        new, metrics = train_step(state.with_learning_rate(lr), batch, key)
        moved[lr] = float(optax.tree.norm(jax.tree.map(jnp.subtract, new.params, state.params)))
        assert float(metrics.lr) == np.float32(lr)
    assert moved[0.1] > 0 and moved[0.0] == 0


def test_adam_weight_decay_is_l2_in_the_gradient_like_torch():
    """torch.optim.Adam(weight_decay=wd): g += wd * p, then Adam; step 1 moves by lr*sign(g)."""
    config = base_config().training
    config.update(weight_decay=0.5, learning_rate=0.1)
    tx = make_optimizer(config)
    params = {"w": jnp.array([1.0, -2.0])}
    updates, _ = tx.update({"w": jnp.array([0.0, 0.0])}, tx.init(params), params)
    np.testing.assert_allclose(updates["w"], [-0.1, 0.1], rtol=1e-4)  # sign of wd * p


def test_dropout_differs_per_step_but_is_reproducible():
    state, batch, key = _state(), _batch(), jax.random.key(1)
    a, _ = train_step(state, batch, key)
    b, _ = train_step(state, batch, key)
    c, _ = train_step(state.replace(step=state.step + 1), batch, key)
    same = jax.tree.map(np.array_equal, a.params, b.params)
    assert all(jax.tree.leaves(same))
    differ = jax.tree.map(lambda x, y: not np.array_equal(x, y), a.params, c.params)
    assert any(jax.tree.leaves(differ))


def test_eval_step_gives_probabilities_and_per_example_loss():
    state, batch = _state(), _batch(6)
    out = eval_step(state, batch)
    assert out.probs.shape == (6,) and out.loss.shape == (6,)
    assert np.all((out.probs > 0) & (out.probs < 1))
    expected = -np.where(batch["label"] == 1, np.log(out.probs), np.log1p(-out.probs))
    np.testing.assert_allclose(out.loss, expected, rtol=1e-4, atol=1e-6)


def test_bfloat16_compute_keeps_float32_params_and_loss():
    state, batch, key = _state(dtype="bfloat16"), _batch(), jax.random.key(1)
    new, metrics = jit_train_step(state, batch, key)
    assert metrics.loss.dtype == jnp.float32 and np.isfinite(float(metrics.loss))
    assert {leaf.dtype for leaf in jax.tree.leaves(new.params)} == {jnp.dtype(jnp.float32)}
    assert any(jax.tree.leaves(jax.tree.map(lambda a, b: not np.array_equal(a, b), new.params, state.params)))


def test_streams_are_independent_and_seeded():
    a, b, c = make_streams(1), make_streams(1), make_streams(2)
    assert (a.data_seed, a.augment_seed) == (b.data_seed, b.augment_seed)
    assert (a.data_seed, a.augment_seed) != (c.data_seed, c.augment_seed)
    assert a.data_seed != a.augment_seed
    assert not np.array_equal(jax.random.key_data(a.init), jax.random.key_data(a.dropout))


def test_multiclass_head_uses_softmax_cross_entropy():
    logits = jnp.array([[2.0, 0.0, -1.0]])
    expected = -jax.nn.log_softmax(logits)[0, 0]
    task = Task(binary=False, num_logits=3, class_names=("a", "b", "c"))
    np.testing.assert_allclose(task.loss(logits, jnp.array([0])), [expected], rtol=1e-6)


@pytest.mark.parametrize(
    "task",
    [PCAM_ONE_LOGIT, Task(True, 2, ("no", "yes")), Task(False, 4, ("a", "b", "c", "d"))],
    ids=["one-logit", "two-logits", "4-class"],
)
def test_step_counts_correct_training_predictions_like_a_direct_computation(task):
    config = base_config()
    config.model.update(hidden_units=(8,), dropout_rate=0.0, num_classes=task.num_logits)
    model = create_model(config.model)
    state = create_train_state(jax.random.key(3), model, make_optimizer(config.training), fixed_normalization())
    batch = _batch(16, seed=4)
    batch["label"] = np.random.default_rng(5).integers(0, max(task.num_logits, 2), 16).astype(np.int32)
    batch["mask"][-3:] = False  # padding rows never count
    logits = np.asarray(state.apply_fn({"params": state.params}, (batch["image"] / 255.0 - 0.5) / 0.5, train=False))
    if task.num_logits == 1:
        predicted = (1 / (1 + np.exp(-logits[:, 0].astype(np.float64))) >= 0.5).astype(int)
    else:
        predicted = logits.argmax(axis=1)
    expected = int(((predicted == batch["label"]) & batch["mask"]).sum())
    _, metrics = jit_train_step(state, batch, jax.random.key(1), task=task)
    assert int(metrics.correct) == expected and int(metrics.count) == 13
    assert 0 < expected < 13  # the batch tells right from wrong


def test_step_rate_sets_the_rate_of_the_update_and_the_state_keeps_the_epoch_rate():
    from jaxpcam.training.schedules import StepRate

    state, batch, key = _state(optimizer="sgd", momentum=0.0, learning_rate=0.1), _batch(), jax.random.key(1)
    state = state.replace(step=jnp.asarray(3, jnp.int32))
    rate = StepRate(cosine=True, warmup_steps=2, total_steps=9, min_lr=0.0)  # update 4 of 9
    expected_lr = rate(3, 0.1)
    assert 0 < float(expected_lr) < 0.1
    new, metrics = train_step(state, batch, key, step_rate=rate)
    same, same_metrics = train_step(state.with_learning_rate(expected_lr), batch, key)
    assert float(metrics.lr) == float(expected_lr) == float(same_metrics.lr)  # the rate logged is the one used
    assert all(jax.tree.leaves(jax.tree.map(np.array_equal, new.params, same.params)))
    assert float(new.learning_rate) == np.float32(0.1)  # the epoch rate, for the next step's rate
