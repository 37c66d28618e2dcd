"""How long SIGTERM takes to be honoured while training runs slow steps (docs/failures-and-resume.md).

Starts ``python -m jaxpcam.main`` (default: configs/cnn.py with gradient accumulation, whose
steps take seconds on a CPU), on one process or several (a local jax.distributed job, 1 CPU
device each), waits ``--after_seconds`` past the compile, sends SIGTERM to the last process only
(as when one node is told first) and measures the time until every process has exited.

    python benchmarks/stop_latency.py [--src DIR] [--processes 2] [--grad_accum_steps 4] [extra main flags]
"""

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAVED = re.compile(r"saved checkpoint at step (\d+)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _start(args, workdir: Path) -> list[subprocess.Popen]:
    command = [sys.executable, "-m", "jaxpcam.main", "--config", str(Path(args.src) / args.config),
               f"--workdir={workdir}", f"--config.training.grad_accum_steps={args.grad_accum_steps}",
               "--config.training.log_every_steps=20", *args.extra]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": args.src, "JAX_PLATFORMS": "cpu"}
    if args.processes > 1:
        command += [f"--coordinator_address=localhost:{_free_port()}", f"--num_processes={args.processes}"]
    return [
        subprocess.Popen(
            [*command, *([f"--process_id={i}"] if args.processes > 1 else [])],
            cwd=args.src,
            env=env,
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )
        for i in range(args.processes)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", default=str(REPO), help="the jaxpcam source tree to run (PYTHONPATH)")
    parser.add_argument("--config", default="configs/cnn.py")
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--grad_accum_steps", type=int, default=4)
    parser.add_argument("--after_seconds", type=float, default=60.0, help="SIGTERM this long after the compile")
    parser.add_argument("extra", nargs="*")
    args = parser.parse_args()
    procs = _start(args, Path(tempfile.mkdtemp(prefix="stop-latency-")) / "run")
    lines, started = [], threading.Event()

    def read(proc: subprocess.Popen, index: int) -> None:
        for line in proc.stderr:
            lines.append((time.monotonic(), index, line.rstrip()))
            if "compiled the train step" in line:
                started.set()

    for i, proc in enumerate(procs):
        threading.Thread(target=read, args=(proc, i), daemon=True).start()
    if not started.wait(1200):
        for proc in procs:
            proc.kill()
        sys.exit("training did not start:\n" + "\n".join(line for *_, line in lines[-20:]))
    compiled = time.monotonic()
    time.sleep(args.after_seconds)
    sent = time.monotonic()
    procs[-1].send_signal(signal.SIGTERM)
    codes = [proc.wait() for proc in procs]
    took = time.monotonic() - sent
    time.sleep(0.5)
    print("\n".join(f"[{i}] {line}" for _, i, line in lines[-8:]))
    saved = [int(m.group(1)) for *_, line in lines for m in [SAVED.search(line)] if m]
    per_step = f"; {saved[0]} steps in the {sent - compiled:.0f} s before it" if saved else ""
    print(f"{args.processes} process(es), exit codes {codes}; SIGTERM honoured {took:.1f} s after sending{per_step}")


if __name__ == "__main__":
    main()
