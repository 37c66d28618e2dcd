import os
import re
import sys
from importlib import metadata
from unittest.mock import ANY

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpcam.config import base_config
from jaxpcam.core.errors import UserError
from jaxpcam.core.runtime import (
    CPU_MULTI_OUTPUT_FUSION,
    GPU_DETERMINISM_FLAG,
    HUGEPAGE_TUNABLE,
    YNN_WITHOUT_CONVOLUTION,
    apply_run_settings,
    hugepage_environment,
    keep_freed_memory,
    user_tuned_malloc,
    with_cpu_defaults,
    with_gpu_determinism,
    xla_flag_value,
)
from jaxpcam.models.cnn import max_pool_2x2


def test_cpu_defaults_are_added_next_to_the_users_flags():
    flags = with_cpu_defaults("--xla_force_host_platform_device_count=4", "0.10.2")
    ours = [YNN_WITHOUT_CONVOLUTION, CPU_MULTI_OUTPUT_FUSION]
    assert flags.split() == ["--xla_force_host_platform_device_count=4", *ours]
    assert with_cpu_defaults("", "0.11.2").split() == ours


@pytest.mark.parametrize("version", ["0.9.0", "0.12.0", "1.0.0"])
def test_unknown_jaxlib_gets_no_flag_because_xla_aborts_on_unknown_flags(version):
    assert with_cpu_defaults("--xla_dump_to=/tmp/x", version) == "--xla_dump_to=/tmp/x"


def test_a_users_own_setting_of_either_flag_wins():
    mine = "--xla_cpu_experimental_ynn_fusion_type=individual_dot,reduce,individual_convolution"
    assert with_cpu_defaults(mine, "0.10.2") == f"{mine} {CPU_MULTI_OUTPUT_FUSION}"
    mine = "--xla_backend_extra_options=xla_cpu_enable_fast_min_max"
    assert with_cpu_defaults(mine, "0.10.2") == f"{mine} {YNN_WITHOUT_CONVOLUTION}"


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="XLA:CPU setting")
def test_convolutions_compile_to_xla_not_ynnpack_on_cpu():
    x, w = jnp.ones((2, 8, 8, 3)), jnp.ones((3, 3, 3, 4))
    conv = jax.jit(
        lambda x, w: jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    )
    hlo = conv.lower(x, w).compile().as_text()
    assert " convolution(" in hlo and "__ynn_fusion" not in hlo


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="XLA:CPU setting")
@pytest.mark.skipif(
    CPU_MULTI_OUTPUT_FUSION not in with_cpu_defaults("", metadata.version("jaxlib")),
    reason="jaxpcam sets multi-output fusion on jaxlib 0.10/0.11 only (no measured gain on 0.12)",
)
def test_adam_like_updates_that_read_the_same_gradient_share_one_loop_on_cpu():
    g = jnp.ones((64, 32))
    moments = jax.jit(lambda g, m, v: (0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g))
    hlo = moments.lower(g, g, g).compile().as_text()
    assert re.search(r"= \(f32\[64,32\]\{1,0\}, f32\[64,32\]\{1,0\}\) fusion\(", hlo), hlo


def test_max_pool_2x2_matches_flax_values_and_gradient():
    x = jax.random.normal(jax.random.key(0), (2, 7, 9, 3))
    reference = lambda x: nn.max_pool(x, (2, 2), strides=(2, 2))  # noqa: E731
    np.testing.assert_array_equal(max_pool_2x2(x), reference(x))
    weights = jax.random.normal(jax.random.key(1), (2, 3, 4, 3))

    def grad(pool):
        return jax.grad(lambda x: jnp.sum(pool(x) * weights))

    np.testing.assert_array_equal(grad(max_pool_2x2)(x), grad(reference)(x))


@pytest.mark.parametrize("environ", [{"LD_PRELOAD": "libjemalloc.so.2"}, {"MALLOC_ARENA_MAX": "2"}])
def test_malloc_is_left_alone_where_the_user_tuned_it(environ, monkeypatch):
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    assert user_tuned_malloc(os.environ)
    assert not keep_freed_memory()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_freed_memory_is_kept_on_linux(monkeypatch):
    for name in [n for n in os.environ if n.startswith("MALLOC_")] + ["LD_PRELOAD"]:
        monkeypatch.delenv(name, raising=False)
    assert keep_freed_memory()


THP_MADVISE = "always [madvise] never\n"


def test_hugepages_are_asked_for_once_and_other_tunables_kept():
    environ = hugepage_environment({"GLIBC_TUNABLES": "glibc.pthread.rseq=0"}, ("glibc", "2.36"), THP_MADVISE)
    assert environ["GLIBC_TUNABLES"] == f"glibc.pthread.rseq=0:{HUGEPAGE_TUNABLE}"
    assert hugepage_environment(environ, ("glibc", "2.36"), THP_MADVISE) is None  # no second restart


@pytest.mark.parametrize(
    ("environ", "libc", "thp"),
    [
        ({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}, ("glibc", "2.36"), THP_MADVISE),  # the user's opt-out
        ({"LD_PRELOAD": "libtcmalloc.so"}, ("glibc", "2.36"), THP_MADVISE),
        ({}, ("glibc", "2.31"), THP_MADVISE),  # before the tunable existed
        ({}, ("", ""), THP_MADVISE),  # musl
        ({}, ("glibc", "2.36"), "always madvise [never]\n"),
    ],
)
def test_no_restart_where_huge_pages_cannot_or_should_not_be_used(environ, libc, thp):
    assert hugepage_environment(environ, libc, thp) is None


def test_gpu_determinism_flag_is_added_replaced_and_read_back():
    assert xla_flag_value("--xla_dump_to=/tmp/x", GPU_DETERMINISM_FLAG) is None
    flags = with_gpu_determinism("--xla_force_host_platform_device_count=4", True)
    assert flags.split() == ["--xla_force_host_platform_device_count=4", "--xla_gpu_deterministic_ops=true"]
    off = with_gpu_determinism(flags, False)
    assert xla_flag_value(off, GPU_DETERMINISM_FLAG) is False and off.count(GPU_DETERMINISM_FLAG) == 1
    assert xla_flag_value("--xla_gpu_deterministic_ops", GPU_DETERMINISM_FLAG) is True
    assert xla_flag_value("--xla_gpu_deterministic_ops_level=2", GPU_DETERMINISM_FLAG) is None


def test_settings_xla_can_no_longer_take_are_refused_and_precision_is_applied(monkeypatch):
    jax.devices()  # JAX has started: XLA_FLAGS were read
    before = os.environ["XLA_FLAGS"]
    training = base_config().training
    training.deterministic = False
    with pytest.raises(UserError, match=r"training\.deterministic: False cannot take effect"):
        apply_run_settings(training)
    assert os.environ["XLA_FLAGS"] == before
    training.deterministic, training.matmul_precision = True, "highest"
    try:
        expected = {"deterministic_gpu_ops": True, "matmul_precision": "highest", "compilation_cache": ANY}
        assert apply_run_settings(training) == expected
        assert jax.config.jax_default_matmul_precision == "highest"
    finally:
        jax.config.update("jax_default_matmul_precision", None)


def test_a_users_own_determinism_flag_wins_over_the_config(monkeypatch):
    import jaxpcam.core.runtime as runtime

    monkeypatch.setattr(runtime, "USER_XLA_FLAGS", "--xla_gpu_deterministic_ops=false")
    monkeypatch.setenv("XLA_FLAGS", "--xla_gpu_deterministic_ops=false")
    training = base_config().training  # deterministic=True
    assert apply_run_settings(training)["deterministic_gpu_ops"] is False
    assert os.environ["XLA_FLAGS"] == "--xla_gpu_deterministic_ops=false"


def test_importing_jaxpcam_changes_nothing_in_the_process():
    import subprocess
    import sys

    code = (
        "import os\n"
        "import jaxpcam.training.loop, jaxpcam.evaluation.evaluate, jaxpcam.data.pcam\n"
        "print(os.environ.get('XLA_FLAGS'), os.environ.get('JAXPCAM_ADDED_XLA_FLAGS'))\n"
        "from jaxpcam.core.runtime import prepare_process\n"
        "prepare_process(restart=False)\n"
        "print('--xla_gpu_deterministic_ops=true' in os.environ.get('XLA_FLAGS', ''))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAXPCAM_ADDED_XLA_FLAGS")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["None", "None", "True"]  # untouched on import; set by a command's start
