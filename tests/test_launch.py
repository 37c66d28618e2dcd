"""The SLURM scripts: valid bash, only real paths and flags, and SIGTERM -> checkpoint -> requeue;
the cluster install: one JAX release for the CPU, NVIDIA and AMD, named alike everywhere."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import tomllib
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from conftest import REPO, tiny_overrides

SCRIPT = REPO / "launch" / "slurm_train.sh"
SCRIPTS = sorted((REPO / "launch").rglob("*.sh"))
# sbatch's long options (man sbatch) that the scripts may use; a typo is not silently ignored.
SBATCH_OPTIONS = {
    "job-name", "partition", "account", "gpus", "gpus-per-node", "gpus-per-task", "nodes", "ntasks",
    "ntasks-per-node", "cpus-per-task", "mem", "mem-per-cpu", "time", "signal", "requeue", "open-mode",
    "output", "error", "array", "exclusive", "constraint", "qos",
}  # fmt: skip


def _module_flags(module: str) -> set[str]:
    code = f"import {module} as m; print(' '.join(m.FLAGS))"  # each command's own FlagValues
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    return set(out.stdout.split())


def _config_key_exists(dotted: str) -> bool:
    from jaxpcam.config import base_config

    node = base_config()
    for part in dotted.split("."):
        if not hasattr(node, "keys") or part not in node:
            return False
        node = node[part]
    return True


def test_scripts_are_valid_bash_and_use_existing_paths_options_and_flags():
    assert len(SCRIPTS) >= 11  # lib, install, generic, and 1-GPU/multi-GPU/multi-node/sweep for two clusters
    flags = {"jaxpcam.main": _module_flags("jaxpcam.main"), "jaxpcam.sweep": _module_flags("jaxpcam.sweep")}
    calls = {"jaxpcam_train": "jaxpcam.main", "jaxpcam_sweep_task": "jaxpcam.sweep"}
    for script in SCRIPTS:
        subprocess.run(["bash", "-n", str(script)], check=True)
        text = script.read_text()
        for path in set(re.findall(r"(?:configs|launch)/[\w./-]+\.(?:py|sh)", text)):
            assert (REPO / path).is_file(), f"{script.name}: {path}"
        for option in re.findall(r"^#SBATCH --([\w-]+)", text, re.MULTILINE):
            assert option in SBATCH_OPTIONS, f"{script.name}: #SBATCH --{option}"
        commands = re.findall(r"-m (jaxpcam\.\w+)((?:[^\n]*\\\n)*[^\n]*)", text)
        commands += [
            (calls[f], rest)
            for f, rest in re.findall(
                r"^\s*(?:LAUNCHER=.* )?(jaxpcam_train|jaxpcam_sweep_task)( .*)$", text, re.MULTILINE
            )
        ]
        for module, rest in commands:
            for flag in re.findall(r"(?<![\w-])--([\w.]+)", rest):
                if flag.startswith("config."):
                    assert _config_key_exists(flag[len("config.") :]), f"{script.name}: --{flag}"
                else:
                    assert flag in flags[module], f"{script.name}: {module} has no --{flag}"
    lib = (REPO / "launch" / "lib.sh").read_text()
    assert "-m jaxpcam.main" in lib and "-m jaxpcam.sweep" in lib and "--index" in lib


def _fake_slurm_bin(tmp_path):
    """scontrol records its calls; srun runs its command (dropping its own options) here."""
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    calls = tmp_path / "scontrol_calls"
    (fake_bin / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    (fake_bin / "srun").write_text('#!/usr/bin/env bash\nwhile [[ "$1" == --* ]]; do shift; done\nexec "$@"\n')
    for tool in ("scontrol", "srun"):
        (fake_bin / tool).chmod(0o755)
    return fake_bin, calls


def test_multinode_script_stages_data_records_the_environment_and_trains(tiny_pcam, tmp_path):
    fake_bin, _ = _fake_slurm_bin(tmp_path)
    workdir, stage = tmp_path / "run", tmp_path / "node-local"
    env = {
        **os.environ, "PATH": f"{fake_bin}:{os.environ['PATH']}", "SLURM_JOB_ID": "77", "PYTHON": sys.executable,
        "JAX_PLATFORMS": "cpu", "WORKDIR": str(workdir), "DATA": str(tiny_pcam), "STAGE_DIR": str(stage),
    }  # fmt: skip
    overrides = [o for o in tiny_overrides(tiny_pcam) if not o.startswith("--config.data.dir")]
    script = REPO / "launch" / "snellius" / "train_multinode.sh"
    args = [*overrides, "--config.training.epochs=1", "--config.data.num_workers=0"]  # after the script's 8
    result = subprocess.run(["bash", str(script), *args], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert sorted(p.name for p in stage.iterdir()) == sorted(p.name for p in tiny_pcam.glob("camelyonpatch_*"))
    config = json.loads((workdir / "config.json").read_text())["config"]
    assert config["data"]["dir"] == str(stage) and config["data"]["num_workers"] == 0
    environment = (workdir / "environment-77.txt").read_text()
    assert "# job 77 restart 0" in environment and "jax==" in environment
    assert len((workdir / "metrics.jsonl").read_text().splitlines()) == 1


def test_sigterm_makes_training_checkpoint_and_the_job_requeue(tiny_pcam, tmp_path):
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    calls = tmp_path / "scontrol_calls"
    (fake_bin / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    (fake_bin / "scontrol").chmod(0o755)
    workdir = tmp_path / "run"
    env = {
        **os.environ,
        "PATH": f"{fake_bin}:{os.environ['PATH']}",
        "SLURM_JOB_ID": "4242",
        "WORKDIR": str(workdir),
        "PYTHON": sys.executable,
        "JAX_PLATFORMS": "cpu",
    }
    overrides = tiny_overrides(tiny_pcam, **{"training.epochs": 50, "training.log_every_steps": 1})
    proc = subprocess.Popen(
        ["bash", str(SCRIPT), *overrides],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if "(global 3)" in line:
            break
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    seen.append(proc.stdout.read())
    output = "".join(seen)
    assert proc.wait() == 143, output[-2000:]
    assert "stopped on SIGTERM: saved checkpoint" in output
    assert calls.read_text().split() == ["requeue", "4242"]
    assert any(p.name.isdigit() for p in (workdir / "checkpoints").iterdir())
    assert (workdir / "environment-4242.txt").is_file()


# Where JAX versions and GPU packages are named: the docs, the install and launch scripts, the build files.
NAMING_JAX = [
    REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "launch" / "README.md",
    REPO / "benchmarks" / "README.md", REPO / "pyproject.toml", REPO / "Makefile", *SCRIPTS,
]  # fmt: skip


def _pins() -> dict[str, str]:
    lines = (REPO / "constraints.txt").read_text().splitlines()
    return dict(line.split("==") for line in lines if "==" in line)


def test_one_jax_release_for_cpu_nvidia_and_amd_named_alike_everywhere():
    pins = _pins()
    release = pins["jax"]
    assert pins["jaxlib"] == pins["jax-cuda13-plugin"] == pins["jax-cuda13-pjrt"] == release
    # AMD builds a release without its patch suffix (0.12.0 for 0.12.0.1): the same release
    assert pins["jax-rocm7-plugin"] == pins["jax-rocm7-pjrt"]
    assert Version(release).release[:3] == Version(pins["jax-rocm7-plugin"]).release
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    (jax_range,) = [d[len("jax") :] for d in dependencies if re.fullmatch(r"jax[<>=!~].*", d)]
    assert Version(release) in SpecifierSet(jax_range)
    for path in NAMING_JAX:
        text, where = path.read_text(), path.relative_to(REPO)
        assert set(re.findall(r"\bjax\[([\w-]+)\]", text)) <= {"cuda13"}, where  # no cuda12, no other extra
        for name in re.findall(r"\bjax-(?:cuda|rocm)\d+-(?:plugin|pjrt)\b", text):
            assert name in pins, (where, name)
        for name, version in re.findall(r"\b(jax|jaxlib|jax-[\w-]+)(?:\[[\w-]+\])?==([\d.]+)", text):
            assert pins.get(name) == version, (where, name, version)
        for names, version in re.findall(r"((?:`jax[\w-]*`(?:, | and ))*`jax[\w-]*`) (\d+\.\d+[\d.]*\d)", text):
            for name in re.findall(r"`(jax[\w-]*)`", names):
                assert pins.get(name) == version, (where, name, version)


# Stands in for python3.12: `-m venv DIR` makes DIR/bin/python (this script again); any other
# call is recorded in the file $FAKE_LOG.
FAKE_PYTHON = """#!/usr/bin/env bash
if [ "$1 $2" = "-m venv" ]; then mkdir -p "$3/bin" && cp "$0" "$3/bin/python"; exit 0; fi
echo "$*" >> "$FAKE_LOG"
"""


@pytest.mark.parametrize("platform, packages", [("cpu", []), ("cuda", ["jax-cuda13-plugin"]),
                                                ("rocm", ["jax-rocm7-plugin"])])  # fmt: skip
def test_install_script_installs_the_pinned_release_for_each_platform(platform, packages, tmp_path):
    fake, log = tmp_path / "python3.12", tmp_path / "calls"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    env = {**os.environ, "PYTHON": str(fake), "FAKE_LOG": str(log)}
    script = REPO / "launch" / "install.sh"
    subprocess.run(["bash", str(script), platform, str(tmp_path / "venv")], env=env, check=True, timeout=60)
    install = log.read_text().splitlines()[0].split()
    assert install[:6] == ["-m", "pip", "install", "-c", "constraints.txt", "-e"] and install[6] == "."
    named = {"jax[cuda13]": "jax-cuda13-plugin"}  # the extra that brings the NVIDIA plugin
    assert [named.get(arg, arg) for arg in install[7:]] == packages
    assert all(package in _pins() for package in packages)  # pinned: the one release
    wrong = subprocess.run(["bash", str(script), "gpu"], env=env, capture_output=True, text=True, timeout=60)
    assert wrong.returncode == 2 and wrong.stderr.startswith("error:")
