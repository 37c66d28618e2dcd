"""training.grad_accum_steps compiles to the form XLA:CPU runs fast, and keeps its memory promise.

No timing: the slow form is recognised in the program itself. XLA:CPU (jaxlib 0.12) compiles the
convolutions of a gradient inside a while loop as plain loop code instead of YNNPACK's, which made
the CNN's accumulated step 40-90x slower (training/accumulation.py)."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpcam.config import base_config
from jaxpcam.data.normalization import fixed_normalization
from jaxpcam.models import create_model
from jaxpcam.training import accumulation, steps
from jaxpcam.training.state import create_train_state, make_optimizer
from jaxpcam.training.steps import jit_train_step

IMAGE_SHAPE = (64, 64, 3)
CALLED = re.compile(r"(?:body|condition|to_apply|calls)=%?([\w.\-]+)|branch_computations=\{([^}]*)\}")


@pytest.fixture(scope="module")
def cnn_state():
    config = base_config()
    config.model.update(name="cnn", conv_features=(4, 8, 8), hidden_units=(8,))
    tx = make_optimizer(config.training)
    return create_train_state(jax.random.key(0), create_model(config.model), tx, fixed_normalization(), IMAGE_SHAPE)


def _batch(n: int) -> dict:
    return {
        "image": jax.ShapeDtypeStruct((n, *IMAGE_SHAPE), jnp.uint8),
        "label": jax.ShapeDtypeStruct((n,), jnp.int32),
        "mask": jax.ShapeDtypeStruct((n,), bool),
    }


def computations(hlo: str) -> dict[str, str]:
    """Each computation of an HLO module's text, by name."""
    parts = re.split(r"^(?:ENTRY )?%?([\w.\-]+) [^\n]*\{\s*$", hlo, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def reachable(name: str, bodies: dict[str, str]) -> set[str]:
    """The computation ``name`` and every computation it calls, directly or not."""
    seen, todo = set(), [name]
    while todo:
        current = todo.pop()
        if current not in seen and current in bodies:
            seen.add(current)
            for single, several in CALLED.findall(bodies[current]):
                todo += [single] if single else [c.strip().lstrip("%") for c in several.split(",")]
    return seen


def while_bodies_with_convolutions(hlo: str) -> list[str]:
    bodies = computations(hlo)
    loops = [m.group(1) for m in re.finditer(r"\bwhile\([^\n]*?\bbody=%?([\w.\-]+)", hlo)]
    return [b for b in loops if any(" convolution(" in bodies[c] for c in reachable(b, bodies))]


def test_the_hlo_helpers_find_a_convolution_inside_a_while_loop():
    """The detector itself: a rolled lax.scan over convolutions is found (the form to avoid)."""

    def rolled(x, w):
        conv = lambda c, _: (jax.lax.conv(c, w, (1, 1), "SAME"), None)  # noqa: E731
        return jax.lax.scan(conv, x, length=2)[0]

    x, w = jnp.zeros((1, 2, 8, 8)), jnp.zeros((2, 2, 3, 3))
    assert while_bodies_with_convolutions(jax.jit(rolled).lower(x, w).as_text(dialect="hlo"))
    unrolled = jax.jit(lambda x, w: jax.lax.conv(jax.lax.conv(x, w, (1, 1), "SAME"), w, (1, 1), "SAME"))
    hlo = unrolled.lower(x, w).as_text(dialect="hlo")
    assert " convolution(" in hlo and not while_bodies_with_convolutions(hlo)


def test_accumulated_cnn_step_has_no_convolution_inside_a_loop(cnn_state):
    lowered = jit_train_step.lower(cnn_state, _batch(8), jax.random.key(0), accum_steps=2)
    hlo = lowered.as_text(dialect="hlo")
    assert while_bodies_with_convolutions(hlo) == []
    # each micro-batch's own: 3 forward, 2 input-gradient and 3 kernel-gradient convolutions
    assert hlo.count(" convolution(") == 2 * 8


def test_accumulation_holds_the_activations_of_one_micro_batch(cnn_state):
    """XLA's own memory analysis: 4 micro-batches of b need about what one batch of b needs, far
    less than one batch of 4b (measured, configs/cnn.py, b = 64: 55 MiB, 45 MiB and 183 MiB of
    temporaries). An unrolled loop without the barriers was scheduled to hold all four (158 MiB)."""

    def temp_bytes(records: int, accum_steps: int) -> int:
        lowered = jit_train_step.lower(cnn_state, _batch(records), jax.random.key(0), accum_steps=accum_steps)
        return lowered.compile().memory_analysis().temp_size_in_bytes

    accumulated, one_big_batch = temp_bytes(4 * 16, 4), temp_bytes(4 * 16, 1)
    assert accumulated < 0.5 * one_big_batch, (accumulated, one_big_batch)


def rolled_scan_value_and_grad(loss_fn, params, batch, step_key, accum_steps):
    """The implementation before the unrolled loop (a rolled lax.scan), the numbers to keep."""
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    micro_batches = {name: accumulation._micro_batches(x, accum_steps) for name, x in batch.items()}

    def micro_step(carry, micro):
        (loss_sum, aux_sum, grad_sum), (batch_j, j) = carry, micro
        (loss, aux), grads = grad_fn(params, batch_j, jax.random.fold_in(step_key, j))
        return (loss_sum + loss, aux_sum + aux, jax.tree.map(jnp.add, grad_sum, grads)), None

    zeros = (jnp.zeros((), jnp.float32), jnp.zeros((), jnp.int32), jax.tree.map(jnp.zeros_like, params))
    (loss_sum, aux_sum, grad_sum), _ = jax.lax.scan(micro_step, zeros, (micro_batches, jnp.arange(accum_steps)))
    return (loss_sum / accum_steps, aux_sum), jax.tree.map(lambda g: g / accum_steps, grad_sum)


def test_the_unrolled_loop_gives_the_rolled_scans_numbers_bit_for_bit(monkeypatch):
    """On a model without convolutions (no other kernel chosen), loss, gradient norm and update
    are the old scan's to the last bit; without the input barrier the loss moved by one ulp."""
    config = base_config()
    config.model.hidden_units = (16,)
    state = create_train_state(
        jax.random.key(0), create_model(config.model), make_optimizer(config.training), fixed_normalization()
    )
    rng = np.random.default_rng(0)
    batch = {"image": jnp.asarray(rng.integers(0, 256, (32, 96, 96, 3)), jnp.uint8)}
    batch |= {"label": jnp.asarray(rng.integers(0, 2, 32), jnp.int32), "mask": jnp.ones(32, bool)}
    step = lambda state, batch: steps.train_step(state, batch, jax.random.key(1), accum_steps=2)  # noqa: E731
    unrolled = jax.jit(step)(state, batch)
    monkeypatch.setattr(steps, "value_and_grad", rolled_scan_value_and_grad)
    rolled = jax.jit(lambda state, batch: step(state, batch))(state, batch)  # a new function: traced again
    for got, want in zip(jax.tree.leaves(unrolled), jax.tree.leaves(rolled), strict=True):
        np.testing.assert_array_equal(got, want)
