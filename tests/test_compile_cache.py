"""The persistent compilation cache (core/compile_cache.py): where it goes, when it is refused,
and that a run with a cold cache, a warm one or none writes the same metrics."""

import errno
import json
import stat
from pathlib import Path

from conftest import metrics_without_timing, run_main, tiny_overrides
from jaxpcam.core import compile_cache


def test_the_folder_is_keyed_by_machine_and_moved_or_disabled_by_the_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    default = compile_cache.cache_folder({})
    assert default.parent == tmp_path / "xdg" / "jaxpcam"
    assert default.name.startswith("xla-") and "jaxlib" in default.name
    moved = compile_cache.cache_folder({"JAXPCAM_COMPILE_CACHE": str(tmp_path / "elsewhere")})
    assert moved == tmp_path / "elsewhere" / default.name  # still keyed by machine
    assert compile_cache.cache_folder({"JAXPCAM_COMPILE_CACHE": "off"}) is None
    assert compile_cache.cache_folder({"JAX_COMPILATION_CACHE_DIR": "/theirs"}) is None  # the user's own wins


def test_cpus_with_other_features_or_another_jaxlib_get_other_folders():
    """XLA:CPU programs use the host's CPU features: a machine without one rejects them."""
    key = compile_cache.machine_key("0.12.0", "avx avx2 sse4_2")
    assert key != compile_cache.machine_key("0.12.0", "avx avx2 avx512f sse4_2")
    assert key != compile_cache.machine_key("0.12.1", "avx avx2 sse4_2")
    assert key == compile_cache.machine_key("0.12.0", "avx avx2 sse4_2")


def test_the_folder_is_private_and_small_programs_are_cached_too(tmp_path):
    options, warning = compile_cache.jax_options({"JAXPCAM_COMPILE_CACHE": str(tmp_path)})
    folder = Path(options["jax_compilation_cache_dir"])
    assert warning is None and stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert options["jax_persistent_cache_min_compile_time_secs"] == 0
    assert options["jax_persistent_cache_min_entry_size_bytes"] == -1
    env = {"JAXPCAM_COMPILE_CACHE": str(tmp_path), "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "5"}
    assert "jax_persistent_cache_min_compile_time_secs" not in compile_cache.jax_options(env)[0]  # theirs


def test_a_folder_others_can_write_to_is_refused_with_a_warning(tmp_path):
    folder = compile_cache.cache_folder({"JAXPCAM_COMPILE_CACHE": str(tmp_path)})
    folder.mkdir()
    folder.chmod(0o777)
    options, warning = compile_cache.jax_options({"JAXPCAM_COMPILE_CACHE": str(tmp_path)})
    assert options == {}
    assert warning.startswith(f"WARNING: not using the compilation cache {folder}: others can write to it")


def test_a_folder_that_cannot_be_written_or_is_a_file_is_refused_with_one_warning(tmp_path, monkeypatch):
    setting = {"JAXPCAM_COMPILE_CACHE": str(tmp_path / "ro")}

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    with monkeypatch.context() as m:
        m.setattr(compile_cache.tempfile, "TemporaryFile", read_only)  # a read-only mount, as root sees it too
        options, warning = compile_cache.jax_options(setting)
    assert options == {} and warning.endswith(
        "cannot write to it: Read-only file system (JAXPCAM_COMPILE_CACHE=off silences this)"
    )
    (tmp_path / "file").write_text("")
    options, warning = compile_cache.jax_options({"JAXPCAM_COMPILE_CACHE": str(tmp_path / "file")})
    assert options == {} and ": not a folder (" in warning


def test_off_may_be_written_as_users_do_and_a_relative_folder_is_recorded_whole(tmp_path, monkeypatch):
    assert all(compile_cache.cache_folder({"JAXPCAM_COMPILE_CACHE": v}) is None for v in ("0", "false", "No", "none"))
    monkeypatch.chdir(tmp_path)
    assert compile_cache.cache_folder({"JAXPCAM_COMPILE_CACHE": "rel"}).parent == tmp_path / "rel"


def _run(workdir, data_dir, setting: str, warns: bool = False) -> dict:
    """A tiny MLP run in a process of its own, with JAXPCAM_COMPILE_CACHE=setting; its provenance."""
    args = ["--config", "configs/mlp.py", f"--workdir={workdir}", *tiny_overrides(data_dir, **{"training.epochs": 1})]
    done = run_main(args, env_extra={"JAXPCAM_COMPILE_CACHE": setting, "JAX_COMPILATION_CACHE_DIR": ""})
    assert done.returncode == 0, done.stderr[-3000:]
    said = [x for x in done.stderr.splitlines() if "compilation cache" in x]
    assert len(said) == int(warns) and "UserWarning" not in done.stderr, said  # one line when it warns, else none
    if warns:
        assert "has an entry that does not read (jit_train_step: " in said[0] and "compiled anew" in said[0]
    return json.loads((workdir / "config.json").read_text())["provenance"]


def test_a_damaged_entry_is_one_warning_and_is_written_anew(tiny_pcam, tmp_path):
    # A process killed while writing an entry leaves it truncated; JAX warned at every run after.
    cache = tmp_path / "cache"
    _run(tmp_path / "cold", tiny_pcam, str(cache))
    (folder,) = cache.iterdir()
    damaged = sorted(folder.glob("jit_train_step-*-cache"))
    assert damaged
    for entry in damaged:
        entry.write_bytes(entry.read_bytes()[:10])
    _run(tmp_path / "damaged", tiny_pcam, str(cache), warns=True)
    _run(tmp_path / "healed", tiny_pcam, str(cache))  # no warning: the entry was written anew
    assert all(len(entry.read_bytes()) > 10 for entry in folder.glob("jit_train_step-*-cache"))
    reference = metrics_without_timing(tmp_path / "cold")
    assert metrics_without_timing(tmp_path / "damaged") == reference == metrics_without_timing(tmp_path / "healed")


def test_cold_warm_and_no_cache_runs_write_the_same_metrics(tiny_pcam, tmp_path):
    cache = tmp_path / "cache"
    cold = _run(tmp_path / "cold", tiny_pcam, str(cache))
    (folder,) = cache.iterdir()
    assert cold["compilation_cache"] == str(folder)
    entries = sorted(p.name for p in folder.iterdir())
    assert len(entries) > 5  # the train and eval steps and the small programs around them
    warm = _run(tmp_path / "warm", tiny_pcam, str(cache))
    assert warm["compilation_cache"] == str(folder)
    assert sorted(p.name for p in folder.iterdir()) == entries  # every program came from the cache
    off = _run(tmp_path / "off", tiny_pcam, "off")
    assert off["compilation_cache"] is None
    reference = metrics_without_timing(tmp_path / "cold")
    assert metrics_without_timing(tmp_path / "warm") == reference == metrics_without_timing(tmp_path / "off")
