"""run/outputs.py, the one way commands write into a run directory or beside runs: concurrent
commands lose nothing, and no command deletes or replaces a file it did not write."""

import json
import os
import subprocess
import sys
import threading

import pytest

from conftest import REPO, train_in_process
from jaxpcam import evaluate, predict, report
from jaxpcam import export as export_command
from jaxpcam.core.errors import UserError
from jaxpcam.evaluation import loading
from jaxpcam.run import outputs


def _fill(folder, text):
    (folder / "result.txt").write_text(text)
    (folder / "sub").mkdir()
    (folder / "sub" / "more.txt").write_text(text)


def test_two_writers_prepared_at_once_both_swap_in_and_the_later_wins(tmp_path):
    final = tmp_path / "eval" / "test"
    first, second = outputs.partial_folder(final), outputs.partial_folder(final)  # both before either swaps
    assert first != second
    _fill(first, "first")
    _fill(second, "second")
    outputs.swap_in(first, final, "test")
    assert (final / "result.txt").read_text() == "first"
    outputs.swap_in(second, final, "test")  # replaces the first: provably written by a command
    assert (final / "result.txt").read_text() == "second" and (final / "sub" / "more.txt").read_text() == "second"
    assert sorted(p.name for p in final.parent.iterdir()) == [outputs.LOCK_FILE, "test"]  # nothing left over


def test_many_concurrent_writers_always_leave_one_whole_version(tmp_path):
    final = tmp_path / "out"
    errors = []

    def write(i):
        try:
            partial = outputs.partial_folder(final)
            _fill(partial, str(i))
            outputs.swap_in(partial, final, "test")
        except Exception as err:  # collected for the assertion
            errors.append(err)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    text = (final / "result.txt").read_text()
    assert (final / "sub" / "more.txt").read_text() == text
    assert outputs.foreign_files(final) == []


def test_a_folder_holding_a_users_file_is_never_replaced(tmp_path):
    final = tmp_path / "out"
    partial = outputs.partial_folder(final)
    _fill(partial, "ours")
    outputs.swap_in(partial, final, "test")
    (final / "notes.txt").write_text("mine")
    partial = outputs.partial_folder(final)
    _fill(partial, "new")
    with pytest.raises(outputs.NotOurs, match=r"notes\.txt"):
        outputs.swap_in(partial, final, "test")
    assert (final / "notes.txt").read_text() == "mine" and (final / "result.txt").read_text() == "ours"
    assert not partial.exists()
    (final / "notes.txt").unlink()
    (final / "result.txt").write_text("edited by hand")  # edited since: not ours any more
    assert outputs.foreign_files(final) == ["result.txt"]


def test_owned_files_are_replaced_only_while_unchanged(tmp_path):
    path = tmp_path / "report.md"
    path.write_text("my own notes\n")
    with pytest.raises(outputs.NotOurs, match="not a file jaxpcam wrote"):
        outputs.write_owned_text(path, "| run |\n", "test")
    assert path.read_text() == "my own notes\n"
    outputs.write_owned_text(path, "| run |\n", "test", overwrite=True)  # the user asked
    outputs.write_owned_text(path, "| run | again\n", "test")  # ours now
    assert path.read_text() == "| run | again\n"
    legacy = tmp_path / "old" / "report.md"
    legacy.parent.mkdir()
    legacy.write_text("| run | seed |\n")  # an older version's report: no manifest, its own first line
    outputs.write_owned_text(legacy, "| run |\n", "test", legacy_head="| run |")
    assert legacy.read_text() == "| run |\n"


@pytest.fixture(scope="module")
def tiny_run(tiny_pcam, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("outputsrun") / "run"
    train_in_process(workdir, tiny_pcam, **{"checkpoint.keep": 2})
    return workdir


def _evaluate(workdir, *extra):
    return subprocess.Popen(
        [sys.executable, "-m", "jaxpcam.evaluate", "--workdir", str(workdir), "--split", "test", *extra],
        cwd=REPO, env={**os.environ, "JAX_PLATFORMS": "cpu"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_two_evaluations_of_one_split_at_once_both_keep_their_word(tiny_run):
    assert evaluate.main(["--workdir", str(tiny_run), "--split", "test"]) == 0  # earlier results
    procs = [_evaluate(tiny_run), _evaluate(tiny_run, "--gallery_size", "4")]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    for code, err in results:
        assert code == 0, err[-2000:]
        assert "Traceback" not in err
    result = json.loads((tiny_run / "eval" / "test" / "metrics.json").read_text())
    assert result["split"] == "test"
    assert outputs.foreign_files(tiny_run / "eval" / "test") == []
    assert not [p.name for p in (tiny_run / "eval").iterdir() if ".partial-" in p.name or ".old-" in p.name]


def _steps(workdir):
    return sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())


def test_evaluating_another_checkpoint_never_changes_what_predict_on_the_best_decides(tiny_run, tmp_path, messages):
    assert evaluate.main(["--workdir", str(tiny_run)]) == 0  # the best checkpoint's threshold
    best = json.loads((tiny_run / "eval" / "valid" / "metrics.json").read_text())["checkpoint_step"]
    other = next(s for s in _steps(tiny_run) if s != best)
    assert evaluate.main(["--workdir", str(tiny_run), "--checkpoint", str(other)]) == 0
    own = json.loads((tiny_run / "eval" / "thresholds" / f"{best}.json").read_text())
    assert own["checkpoint_step"] == best
    messages.clear()
    inputs = tmp_path / "x.npy"
    import numpy as np

    np.save(inputs, np.full((3, 96, 96, 3), 120, np.uint8))
    args = ["--workdir", str(tiny_run), "--input", str(inputs), "--output", str(tmp_path / "p.csv")]
    assert predict.main(args) == 0
    assert any(f"decision threshold {own['value']:.4f}" in m for m in messages), messages
    assert not any("deciding at 0.5" in m for m in messages)


def test_a_checkpoint_rotated_away_while_read_is_not_called_damaged(tiny_run, monkeypatch):
    real = loading._restore_verified
    removed = []

    def rotated_away(manager, step):
        if not removed:  # a running training saves a newer one and removes this one mid-read
            removed.append(step)
            (tiny_run / "checkpoints" / str(step)).rename(tiny_run / f"moved-{step}")
            raise ValueError("a file vanished")
        return real(manager, step)

    monkeypatch.setattr(loading, "_restore_verified", rotated_away)
    try:
        with pytest.raises(UserError, match="was removed while it was being read") as err:
            loading.load_run(tiny_run, str(_steps(tiny_run)[0]))
        assert "damaged" not in str(err.value)
    finally:
        (tiny_run / f"moved-{removed[0]}").rename(tiny_run / "checkpoints" / str(removed[0]))
    removed.clear()
    monkeypatch.setattr(loading, "_restore_verified", rotated_away)
    try:  # 'latest' follows the training to the checkpoint now latest
        assert loading.load_run(tiny_run, "latest").step in _steps(tiny_run)
    finally:
        (tiny_run / f"moved-{removed[0]}").rename(tiny_run / "checkpoints" / str(removed[0]))


def test_export_never_deletes_a_users_file(tiny_run, tmp_path, capsys):
    other = tmp_path / "other_tool"
    other.mkdir()
    (other / "model.json").write_text('{"format": "someone-else/3"}')
    (other / "weights.bin").write_bytes(b"\x00" * 16)
    assert export_command.main(["--workdir", str(tiny_run), "--output", str(other), "--overwrite"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not an export" in err[0]
    assert sorted(p.name for p in other.iterdir()) == ["model.json", "weights.bin"]
    assert export_command.main(["--workdir", str(tiny_run)]) == 0
    (tiny_run / "export" / "README.txt").write_text("how we deploy this")
    assert export_command.main(["--workdir", str(tiny_run), "--overwrite"]) == 2
    assert (tiny_run / "export" / "README.txt").read_text() == "how we deploy this"
    assert (tiny_run / "export" / "model.jaxexport").is_file()
    (tiny_run / "export" / "README.txt").unlink()
    assert export_command.main(["--workdir", str(tiny_run), "--overwrite"]) == 0


def test_the_default_report_never_replaces_a_users_report(tiny_run, capsys):
    own = tiny_run.parent / "report.md"
    own.write_text("# my notes on these runs\n")
    assert report.main([str(tiny_run)]) == 2
    assert "not a file jaxpcam wrote" in capsys.readouterr().err
    assert own.read_text() == "# my notes on these runs\n" and not (tiny_run.parent / "report.csv").exists()
    own.unlink()
    assert report.main([str(tiny_run)]) == 0
    assert report.main([str(tiny_run)]) == 0  # its own report, replaced
    assert own.read_text().startswith("| run |")


def test_an_evaluation_stopped_while_writing_leaves_no_partial_folder(tiny_run, monkeypatch):
    from jaxpcam.core.errors import Interrupted
    from jaxpcam.evaluation import evaluate as evaluate_lib

    def signal_arrives(*args, **kwargs):
        raise Interrupted("SIGTERM", 143)

    monkeypatch.setattr(evaluate_lib, "write_slices_csv", signal_arrives)
    with pytest.raises(Interrupted):
        evaluate_lib.evaluate_run(tiny_run, evaluate_lib.EvalOptions(split="test"))
    assert not [p.name for p in (tiny_run / "eval").iterdir() if ".partial-" in p.name]
