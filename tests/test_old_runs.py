"""Run directories written by jaxpcam up to commit f528f22 (one flat model section of six keys
whatever the model; checkpoints written through Orbax's deprecated ``item_handlers``) resume bit
for bit, evaluate, predict and export with today's code (config.migrate; Orbax's
handler_registry and metadata(step).item_metadata)."""

import json
import shutil

import ml_collections
import orbax.checkpoint as ocp
import pytest

from conftest import TINY_MODELS, metrics_without_timing, train_in_process
from jaxpcam import evaluate, export, predict
from jaxpcam.config import base_config
from jaxpcam.config.files import load_config_file
from jaxpcam.config.migrate import migrate, with_defaults
from jaxpcam.evaluation.run_groups import comparable
from jaxpcam.run.checkpoint_items import ITEMS
from jaxpcam.run.keys import result_changes
from jaxpcam.training import checkpoint, tracking

# f528f22's base_config() model section: every config held all six keys.
F528F22_MODEL = {
    "name": "mlp",
    "hidden_units": (512, 256),
    "dropout_rate": 0.2,
    "num_classes": 1,
    "conv_features": (32, 64, 128),
    "resnet_blocks": (2, 2, 2, 2),
}


def as_f528f22(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """``config`` as f528f22 built it: its model's keys on top of the flat six-key section."""
    old = ml_collections.ConfigDict(config.to_dict())
    old.model = ml_collections.ConfigDict({**F528F22_MODEL, **config.model.to_dict()})
    return old


def f528f22_open_manager(workdir, c):
    """checkpoint.open_manager as f528f22 had it: handlers through ``item_handlers``."""
    options = ocp.CheckpointManagerOptions(
        preservation_policy=checkpoint.retention(c), create=True, cleanup_tmp_directories=True
    )
    handlers = {name: ocp.JsonCheckpointHandler() for name in ITEMS if name not in ("state", "metrics")}
    handlers["state"] = ocp.StandardCheckpointHandler()
    return ocp.CheckpointManager(workdir.resolve() / "checkpoints", options=options, item_handlers=handlers)


@pytest.fixture(scope="module")
def old_run(tiny_pcam, tmp_path_factory):
    """A one-epoch run directory in f528f22's format: config.json's config and every checkpoint's
    config item hold the flat model section, written through the deprecated Orbax API."""
    workdir = tmp_path_factory.mktemp("old") / "run"
    save, record = checkpoint.save, tracking.record_run_config
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(checkpoint, "open_manager", f528f22_open_manager)
        patch.setattr(
            checkpoint, "save", lambda m, s, sc, p, config, *rest: save(m, s, sc, p, as_f528f22(config), *rest)
        )
        patch.setattr(tracking, "record_run_config", lambda w, config, *rest: record(w, as_f528f22(config), *rest))
        train_in_process(workdir, tiny_pcam, **{"training.epochs": 1})
    stored = json.loads((workdir / "config.json").read_text())["config"]["model"]
    assert stored == json.loads(json.dumps({**F528F22_MODEL, "hidden_units": (16,)}))  # what f528f22 wrote
    return workdir


def _copy(run, tmp_path):
    shutil.copytree(run, tmp_path / "run")
    return tmp_path / "run"


def test_an_old_run_resumes_bit_for_bit(old_run, tiny_pcam, tmp_path):
    resumed = _copy(old_run, tmp_path)
    lines = train_in_process(resumed, tiny_pcam)  # 2 epochs: continues the old run's first
    assert any("resum" in line.lower() for line in lines)
    train_in_process(tmp_path / "straight", tiny_pcam)
    assert metrics_without_timing(resumed) == metrics_without_timing(tmp_path / "straight")
    record = json.loads((resumed / "config.json").read_text())
    assert record["resumptions"][-1]["changed"] == {"training.epochs": [1, 2]}  # no model key "changed"
    assert record["config"]["model"] == {**TINY_MODELS["mlp"], "hidden_units": [16]}


def test_an_old_run_with_another_model_is_still_refused(old_run, tiny_pcam, tmp_path):
    from jaxpcam.core.errors import ConfigChanged

    with pytest.raises(ConfigChanged, match=r"different config \(model\.hidden_units\)"):
        train_in_process(_copy(old_run, tmp_path), tiny_pcam, **{"model.hidden_units": (8,)})


def test_an_old_run_evaluates_predicts_and_exports(old_run, tiny_pcam, tmp_path):
    run = _copy(old_run, tmp_path)
    assert evaluate.main(["--workdir", str(run)]) == 0
    evaluated = json.loads((run / "eval" / "valid" / "metrics.json").read_text())["model"]["roc_auc"]
    assert evaluated == pytest.approx(metrics_without_timing(run)[-1]["val_roc_auc"], abs=1e-6)  # the same model
    test_x = tiny_pcam / "camelyonpatch_level_2_split_test_x.h5"
    assert predict.main(["--workdir", str(run), "--input", str(test_x), "--output", str(tmp_path / "p.csv")]) == 0
    assert len((tmp_path / "p.csv").read_text().splitlines()) == 1 + 32
    assert export.main(["--workdir", str(run)]) == 0
    assert json.loads((run / "export" / "model.json").read_text())["model"] == "mlp"


@pytest.mark.parametrize("name", ["mlp", "cnn", "resnet"])
def test_migrate_keeps_exactly_the_keys_of_the_model(name):
    shipped = load_config_file(f"configs/{name}.py")
    old = as_f528f22(shipped)
    assert migrate(old) == shipped.to_dict()
    assert migrate(old.to_dict()) == shipped.to_dict()
    assert migrate(shipped.to_dict()) == shipped.to_dict()  # today's shape: unchanged
    assert old.model.to_dict().keys() == F528F22_MODEL.keys()  # pure: the input is left as it was
    assert result_changes(old.to_dict(), shipped.to_dict()) == {}
    assert comparable(old.to_dict()) == comparable(shipped.to_dict())


def test_migrate_reads_json_lists_and_leaves_an_unknown_model_alone():
    stored = json.loads(json.dumps(as_f528f22(load_config_file("configs/cnn.py")).to_dict()))
    assert migrate(stored)["model"] == {"name": "cnn", "conv_features": [32, 64, 128], "hidden_units": [128],
                                        "dropout_rate": 0.2, "num_classes": 1}  # fmt: skip
    other = {**stored, "model": {**stored["model"], "name": "vit"}}
    assert migrate(other) == other


def test_a_stored_config_compares_with_defaults_for_keys_it_lacks_but_not_the_mlps_model_keys():
    resnet = load_config_file("configs/resnet.py").to_dict()
    older = json.loads(json.dumps(resnet))
    del older["training"]["deterministic"]
    filled = with_defaults(older)
    assert filled["training"]["deterministic"] is base_config().training.deterministic
    assert filled["model"].keys() == resnet["model"].keys()  # no MLP hidden_units filled in
    assert result_changes(older, resnet) == {}
