"""The SLURM script: valid bash, only real paths and flags, and SIGTERM -> checkpoint -> requeue."""

import os
import re
import signal
import subprocess
import sys
import time

from conftest import REPO, tiny_overrides

SCRIPT = REPO / "launch" / "slurm_train.sh"


def test_script_is_valid_bash_and_uses_existing_paths_and_flags():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)
    text = SCRIPT.read_text()
    for path in set(re.findall(r"(?:configs|launch)/[\w./-]+\.(?:py|sh)", text)):
        assert (REPO / path).is_file(), path
    from absl import flags

    from jaxpcam import main  # noqa: F401 - defines the flags

    used = set(re.findall(r'jaxpcam\.main ((?:--\w+ "?\$?\w+"? ?)+)', text)[0].split())
    for flag in (u[2:] for u in used if u.startswith("--")):
        assert flag in flags.FLAGS, flag


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
