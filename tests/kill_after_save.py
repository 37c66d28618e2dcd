"""Test launcher: ``python tests/kill_after_save.py STEP MODULE ARGS...`` runs ``python -m MODULE
ARGS...`` (jaxpcam.main or jaxpcam.sweep) and SIGKILLs it right after the checkpoint save at
global step STEP has started (the write is then still in flight: saves run in Orbax's background
thread here, as on an accelerator, not on the training thread as on the CPU). Keeps the test hook
out of the training code."""

import os
import runpy
import signal
import sys

from jaxpcam.training import checkpoint

KILL_AT = int(sys.argv.pop(1))
MODULE = sys.argv.pop(1)
_save = checkpoint.save
checkpoint.SAVES_IN_BACKGROUND["cpu"] = True  # the kill lands while the write is in flight


def _save_then_die(manager, state, *args, **kwargs):
    _save(manager, state, *args, **kwargs)
    if int(state.step) == KILL_AT:
        os.kill(os.getpid(), signal.SIGKILL)


checkpoint.save = _save_then_die
sys.argv[0] = MODULE
runpy.run_module(MODULE, run_name="__main__", alter_sys=True)
