"""train_and_evaluate in-process on tiny data (the Flax examples' train_test.py), and the loop's
small predicates. Signals and kills stay in subprocess tests (test_reliability.py)."""

import json

import ml_collections
import numpy as np

from conftest import tiny_config
from jaxpcam.training import loop


def _tiny_config(data_dir, **overrides) -> ml_collections.ConfigDict:
    return tiny_config(data_dir, **{"checkpoint.every_steps": 5, **overrides})


def test_train_and_evaluate_in_process(tiny_pcam, tmp_path):
    workdir = tmp_path / "run"
    summary = loop.train_and_evaluate(_tiny_config(tiny_pcam), workdir)
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2] and [r["step"] for r in records] == [8, 16]
    assert summary["epochs"] == 2 and summary["best"]["epoch"] in (1, 2) and summary["last"] == records[-1]
    assert all(np.isfinite(r["train_loss"]) and 0 <= r["val_roc_auc"] <= 1 for r in records)
    kept = {int(p.name) for p in (workdir / "checkpoints").iterdir()}
    assert kept == {8, 16}  # the epoch ends (checkpoint.keep=2; one of them the best); mid-epoch 5, 10, 15 gone
    assert not (workdir / "run.lock").exists()
    again = loop.train_and_evaluate(_tiny_config(tiny_pcam), workdir)  # finished: nothing to do
    assert again["last"] == records[-1]


def test_predicates():
    config = _tiny_config("x", **{"training.log_every_steps": 4, "checkpoint.every_steps": 6})
    assert [loop._time_to_sync(n, config) for n in (3, 4, 5)] == [False, True, True]
    assert [s for s in range(1, 20) if loop._time_to_checkpoint(s, config)] == [6, 12, 18]
    config.checkpoint.every_steps = 0
    assert not any(loop._time_to_checkpoint(s, config) for s in range(1, 20))
