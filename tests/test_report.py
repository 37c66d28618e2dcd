"""jaxpcam.report across runs of different configs: groups, counts, and a table that fits."""

import csv
import json

import pytest

from jaxpcam import report
from jaxpcam.config import base_config
from jaxpcam.evaluation.run_groups import column_stat, comparable, group_configs


def _run(folder, seed, aucs, test_auc=None, test_auc_tta=None, **changes):
    """A run directory with a full config.json (``changes``: dotted key -> value) and one
    metrics.jsonl line per AUC; ``test_auc`` adds an evaluation of the test split,
    ``test_auc_tta`` one with --tta."""
    folder.mkdir(parents=True)
    config = base_config()
    config.update_from_flattened_dict({"seed": seed, **changes})
    (folder / "config.json").write_text(json.dumps({"config": config.to_dict()}))
    records = [{"epoch": e + 1, "val_roc_auc": a, "val_f2": 0.5, "val_accuracy": 0.6, "val_loss": 1 - a}
               for e, a in enumerate(aucs)]  # fmt: skip
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    if test_auc is not None:
        (folder / "eval" / "test").mkdir(parents=True)
        model = {"roc_auc": test_auc, "pr_auc": 0.8, "f2": 0.7, "recall": 0.9, "precision": 0.5, "accuracy": 0.7}
        (folder / "eval" / "test" / "metrics.json").write_text(json.dumps({"split": "test", "model": model}))
    if test_auc_tta is not None:
        (folder / "eval" / "test_tta").mkdir(parents=True)
        model = {"roc_auc": test_auc_tta, "pr_auc": 0.8, "f2": 0.7, "recall": 0.9, "precision": 0.5, "accuracy": 0.7}
        record = {"split": "test", "tta": True, "model": model}
        (folder / "eval" / "test_tta" / "metrics.json").write_text(json.dumps(record))


def _rows(path):
    return list(csv.DictReader(path.open()))


def test_runs_of_different_configs_get_a_mean_per_group_named_by_what_differs(tmp_path, capsys):
    runs = tmp_path / "runs"
    for seed, auc in ((42, 0.80), (43, 0.85), (44, 0.90)):  # paths and logging differ: still one group
        _run(runs / f"e5_{seed}", seed, [0.7, auc], **{"data.dir": f"/d{seed}", "training.log_every_steps": seed})
    for seed, auc in ((42, 0.60), (43, 0.70)):
        _run(runs / f"e2_{seed}", seed, [auc], **{"data.dir": "/d", "training.epochs": 2})
    assert report.main([str(runs)]) == 0
    out = capsys.readouterr().out
    assert "The runs differ in training.epochs: 2 groups" in out
    assert "training.epochs=5 (3 runs)" in out and "training.epochs=2 (2 runs)" in out
    rows = _rows(runs / "report.csv")
    stats = {(r["run"], r["group"]): r for r in rows if r["run"] in ("mean", "std", "n")}
    assert float(stats["mean", "training.epochs=5"]["val_roc_auc"]) == pytest.approx(0.85)
    assert float(stats["std", "training.epochs=5"]["val_roc_auc"]) == pytest.approx(0.05)
    assert float(stats["mean", "training.epochs=2"]["val_roc_auc"]) == pytest.approx(0.65)
    assert stats["n", "training.epochs=2"]["val_roc_auc"] == "2"
    assert {r["group"] for r in rows if r["run"] == "e5_43"} == {"training.epochs=5"}
    assert "Best group by mean val_roc_auc: training.epochs=5 (0.8500, n=3)" in out


def test_one_config_is_one_group_and_says_so(tmp_path, capsys):
    for seed in (42, 43):
        _run(tmp_path / f"seed{seed}", seed, [0.8])
    assert report.main([str(tmp_path / "seed*")]) == 0
    out = capsys.readouterr().out
    assert "one config (2 runs)" in out and "differ" not in out
    assert {r["group"] for r in _rows(tmp_path / "report.csv")} == {"one config"}


def test_a_value_some_runs_lack_is_averaged_over_those_that_have_it(tmp_path, capsys):
    _run(tmp_path / "seed42", 42, [0.8], test_auc=0.8583)
    _run(tmp_path / "seed43", 43, [0.8])
    _run(tmp_path / "seed44", 44, [0.8])
    assert report.main([str(tmp_path / "seed*")]) == 0
    out = capsys.readouterr().out
    markdown = (tmp_path / "report.md").read_text()
    assert "0.8583 (n=1)" in markdown and "0.8583 (n=1)" in out
    assert "undefined" not in markdown + out  # not evaluated is '-', and a mean over one value is that value
    n_row = next(r for r in _rows(tmp_path / "report.csv") if r["run"] == "n")
    assert n_row["test_roc_auc"] == "1" and n_row["val_roc_auc"] == "3"


def test_the_printed_table_fits_100_columns_and_the_csv_has_every_column(tmp_path, capsys):
    for seed in (42, 43, 44):
        name = f"learning_rate=0.001,batch_size=32,optimizer=adam,seed={seed}"
        _run(tmp_path / name, seed, [0.8, 0.81 + seed / 1000], test_auc=0.8)
    assert report.main([str(tmp_path), "--output", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert max(map(len, out.splitlines())) <= 100
    assert "more metric columns" in out and f"{tmp_path / 'r'}.csv" in out
    assert "…" in out and "seed=44" in out  # long names keep their end
    header = next(csv.reader((tmp_path / "r.csv").open()))
    assert {"group", "best_epoch", "val_loss", "test_accuracy", "test_precision"} <= set(header)


def test_tta_results_are_columns_of_their_own_next_to_those_without(tmp_path, capsys):
    for seed, plain, tta in ((42, 0.80, 0.82), (43, 0.84, 0.87), (44, 0.82, None)):
        _run(tmp_path / f"seed{seed}", seed, [0.8], test_auc=plain, test_auc_tta=tta)
    assert report.main([str(tmp_path / "seed*"), "--metrics", "test_roc_auc,test_roc_auc_tta"]) == 0
    out = capsys.readouterr().out
    assert max(map(len, out.splitlines())) <= 100
    header = next(line.split() for line in out.splitlines() if line.strip().startswith("run "))
    assert header[3:5] == ["test_roc_auc", "test_roc_auc_tta"]  # the columns asked for come first
    mean_line = next(line.split() for line in out.splitlines() if line.strip().startswith("mean±std"))
    assert mean_line[1:3] == ["0.8200±0.0200", "0.8450±0.0354"]
    assert "(n=2)" in out.split("0.8450±0.0354")[1].split()[0]
    seed44 = next(line.split() for line in out.splitlines() if line.strip().startswith("seed44"))
    assert seed44[3:5] == ["0.8200", "-"]  # not evaluated with TTA: '-', not 'undefined'
    assert "<split>_*_tta (evaluated with --tta) from RUN/eval/<split>_tta/" in " ".join(out.split())
    header = next(csv.reader((tmp_path / "report.csv").open()))
    assert header.index("test_pr_auc_tta") == header.index("test_pr_auc") + 1  # each next to its twin
    means = next(r for r in _rows(tmp_path / "report.csv") if r["run"] == "mean")
    assert float(means["test_roc_auc_tta"]) == pytest.approx(0.845)


def test_groups_ignore_the_seed_and_paths_but_not_whether_a_path_is_given():
    def config(**changes):
        c = base_config()
        c.update_from_flattened_dict(changes)
        return c.to_dict()

    same = comparable(config(seed=1, **{"data.dir": "/a", "checkpoint.keep": 9}))
    assert same == comparable(config(seed=2, **{"data.dir": "/b"}))
    older = config(seed=3, **{"data.dir": "/c"})
    del older["training"]["deterministic"]  # a run made before the key existed: its default
    assert comparable(older) == same
    assert comparable(config(**{"data.dir": ""})) != same  # '' is the built-in sample: another experiment
    assert comparable(config(**{"training.member_layout": "vmap"})) != same  # vmap members: not twins of these
    labels, keys = group_configs(
        [config(**{"model.hidden_units": (16,)}), config(**{"model.hidden_units": (16, 8)}), {}]
    )
    assert keys == ["model.hidden_units"]
    assert labels == ["model.hidden_units=(16,)", "model.hidden_units=(16, 8)", "(no config.json)"]


def test_column_stat_counts_only_numbers():
    stat = column_stat([0.8, None, float("nan"), 0.9])
    assert stat.n == 2 and abs(stat.mean - 0.85) < 1e-12
    assert column_stat([None]).n == 0


def test_a_damaged_evaluation_is_one_line_naming_it(tmp_path, capsys):
    _run(tmp_path / "seed42", 42, [0.8], test_auc=0.8)
    damaged = tmp_path / "seed42" / "eval" / "test" / "metrics.json"
    damaged.write_text('{"split": "te')
    assert report.main([str(tmp_path / "seed42")]) == 2
    assert capsys.readouterr().err == (
        f"error: {damaged} is damaged (not a JSON object); run python -m jaxpcam.evaluate again to rewrite it\n"
    )
    damaged.write_text('{"model": "x", "tta": true}')  # JSON, but not what evaluation writes
    assert report.main([str(tmp_path / "seed42")]) == 2
    assert capsys.readouterr().err == (
        f"error: {damaged} is damaged (not the record jaxpcam.evaluate writes: it has no model results); run "
        "python -m jaxpcam.evaluate again to rewrite it\n"
    )


def test_an_output_prefix_replaces_existing_files_only_with_overwrite(tmp_path, capsys):
    """--output names the user's path: an existing PREFIX.md/.csv is refused in one line and left
    as it was; --overwrite replaces both. The default report.* beside the runs is replaced."""
    _run(tmp_path / "runs" / "seed42", 42, [0.8])
    mine = tmp_path / "results.csv"
    mine.write_text("my own numbers\n")
    assert report.main([str(tmp_path / "runs"), "--output", str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err
    assert f"--output {tmp_path / 'results'}: {mine} exist(s): pass --overwrite" in err and "Traceback" not in err
    assert mine.read_text() == "my own numbers\n" and not (tmp_path / "results.md").exists()
    assert report.main([str(tmp_path / "runs"), "--output", str(tmp_path / "results"), "--overwrite"]) == 0
    assert mine.read_text().startswith("run,") and (tmp_path / "results.md").is_file()
    for _ in range(2):  # the default prefix is the report's own: rewritten each time
        assert report.main([str(tmp_path / "runs" / "seed42")]) == 0
    assert (tmp_path / "runs" / "report.csv").is_file()


def test_a_metrics_name_no_run_has_is_said_not_only_shown_as_dashes(tmp_path, capsys, messages):
    _run(tmp_path / "seed42", 42, [0.8], test_auc=0.8)
    assert report.main([str(tmp_path / "seed42"), "--metrics", "val_roc_auc,test_roc_auc,tset_roc_auc"]) == 0
    (warning,) = [m for m in messages if "--metrics" in m]
    assert "--metrics tset_roc_auc: no run has it" in warning and "test_roc_auc" in warning
    assert not [m for m in messages if "--metrics val_roc_auc" in m or "--metrics test_roc_auc:" in m]


def test_the_champion_defaults_to_the_first_column_some_run_has_and_tta_columns_follow_their_twins(tmp_path, capsys):
    _run(tmp_path / "seed42", 42, [0.8], test_auc_tta=0.81)  # only TTA results
    _run(tmp_path / "seed43", 43, [0.8], test_auc_tta=0.83)
    assert report.main([str(tmp_path), "--metrics", "test_roc_auc,test_roc_auc_tta"]) == 0
    assert "Champion by test_roc_auc_tta (highest): seed43" in capsys.readouterr().out
    # an explicit --champion without values stays an error, naming the columns there are
    assert report.main([str(tmp_path), "--metrics", "test_roc_auc,test_roc_auc_tta", "--champion", "test_roc_auc"]) == 2
    err = capsys.readouterr().err.splitlines()[-1]  # after the warning that no run has test_roc_auc
    assert err.startswith("error: --champion test_roc_auc: no run has a value for it; they have test_roc_auc_tta, ")
    # plain-only and TTA-only runs: each _tta column right after its twin, whichever run comes first
    _run(tmp_path / "seed44", 44, [0.8], test_auc=0.79)
    assert report.main([str(tmp_path), "--metrics", "test_roc_auc,test_roc_auc_tta"]) == 0
    head = next(csv.reader((tmp_path / "report.csv").open()))
    evaluated = [c for c in head if c.startswith("test_")]
    assert evaluated[:6] == [
        "test_roc_auc",
        "test_roc_auc_tta",
        "test_pr_auc",
        "test_pr_auc_tta",
        "test_f2",
        "test_f2_tta",
    ]


def _trained_on(folder, files):
    """Adds the provenance training writes: the data files' names and fingerprints."""
    record = json.loads((folder / "config.json").read_text())
    entries = [{"name": name, "path": f"/x/{name}", "bytes": 1, "fingerprint": fp} for name, fp in files.items()]
    record["provenance"] = {"data": {"source": "user", "files": entries}}
    (folder / "config.json").write_text(json.dumps(record))


def test_runs_on_other_data_files_are_not_averaged_together_and_the_report_says_so(tmp_path, capsys):
    same = {"train_x.h5": "sampled-aa", "valid_x.h5": "sampled-bb", "camelyonpatch_level_2_split_test_x.h5": "t"}
    staged = {k: v for k, v in same.items() if "test" not in k}  # staged without the test split
    other = {"train_x.h5": "sampled-cc"}
    for seed, path, files in ((42, "", same), (43, "/scratch/staged/pcam", staged), (44, "/data/v2", other)):
        _run(tmp_path / f"seed{seed}", seed, [0.8 + seed / 1000], **{"data.dir": path})
        _trained_on(tmp_path / f"seed{seed}", files)
    assert report.main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    groups = {r["group"] for r in _rows(tmp_path / "report.csv") if r["run"].startswith("seed")}
    assert len(groups) == 2 and all(g.startswith("data.files=") for g in groups)  # a copy of the files is no other data
    assert "The groups differ in their data (data.files)" in out


def test_a_run_without_config_json_is_reported_by_what_its_metrics_hold(tmp_path, capsys):
    # config.json deleted by hand: the task (binary or digits) comes from its metrics.jsonl lines
    _run(tmp_path / "pcam", 42, [0.7, 0.8])
    (tmp_path / "pcam" / "config.json").unlink()
    digits = tmp_path / "digits"
    digits.mkdir()
    record = {"epoch": 1, "val_accuracy": 0.9, "val_macro_f1": 0.88, "val_balanced_accuracy": 0.89, "val_loss": 0.3}
    (digits / "metrics.jsonl").write_text(json.dumps(record) + "\n")
    assert report.main([str(tmp_path)]) == 0
    rows = {r["run"]: r for r in _rows(tmp_path / "report.csv")}
    assert float(rows["pcam"]["val_roc_auc"]) == 0.8 and rows["pcam"]["group"] == "(no config.json)"
    assert float(rows["digits"]["val_macro_f1"]) == 0.88 and not rows["digits"].get("val_roc_auc")
