"""The audit finds exactly what a test planted; data.filter trains on its manifest; --convert."""

import json

import h5py
import numpy as np
import pytest

from conftest import run_main, tiny_overrides, train_in_process
from jaxpcam import audit as audit_cli
from jaxpcam.data.audit_report import montage_note
from jaxpcam.data.pcam import open_split, split_paths
from jaxpcam.data.sample import write_sample

PLANTED = {
    "empty": [3, 7],
    "outlier": [11],
    "trigger": [15, 19],
    "duplicate": [30],
    "also_in_other_splits": [40],
    "out_of_range": [44],
}


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """A course-style copy: float32 x with empty tiles, an outlier, triggers, duplicates, leakage."""
    data = tmp_path_factory.mktemp("planted")
    write_sample(data, {"train": 160, "valid": 40}, seed=3)
    x_path, _ = split_paths(data, "train")
    with h5py.File(x_path) as f:
        x = f["x"][...].astype(np.float32)
    valid = open_split(data, "valid").read(np.arange(40))
    rng = np.random.default_rng(0)
    x[3] = 0.0
    x[7] = 128.0
    x[11] = np.clip(rng.normal(40, 10, (96, 96, 1)), 0, 255).round()  # a dark grey smear, z ~ 6.5
    x[15, 10:14, 80:84] = (np.indices((4, 4)).sum(0) % 2 * 255.0)[..., None]  # checkerboard
    x[19, 50:55, 5:10] = 0.0  # black block
    x[30] = x[23]
    x[40] = valid[5]
    x[44, 0, 0, 0], x[44, 5, 5, 1] = -7.0, 300.0
    with h5py.File(x_path, "w") as f:
        f["x"] = x
    return data


@pytest.fixture(scope="module")
def audited(planted):
    assert audit_cli.main([str(planted)]) == 0
    out = planted / "jaxpcam-audit"
    return json.loads((out / "audit.json").read_text()), out


def test_audit_finds_exactly_the_planted_problems(audited):
    report, _ = audited
    train = report["splits"]["train"]
    for kind, indices in PLANTED.items():
        assert train[kind] == indices, kind
    assert train["trigger_locations"] == {"15": [12, 82], "19": [51, 6]}
    assert train["duplicate_groups"] == [[23, 30]]
    assert report["splits"]["valid"]["also_in_other_splits"] == [5]
    assert all(not report["splits"]["valid"][k] for k in ("empty", "outlier", "trigger", "duplicate"))


def test_audit_reports_files_and_writes_manifest_and_montage(audited):
    report, out = audited
    x_train = next(f for f in report["files"] if f["file"] == "camelyonpatch_level_2_split_train_x.h5")
    assert x_train["dtype"] == "float32" and x_train["bytes_as_uint8"] == 160 * 96 * 96 * 3
    assert x_train["bytes_on_disk"] > 3.9 * x_train["bytes_as_uint8"]  # float32: four times uint8
    assert 0 < x_train["bytes_as_gzip_uint8_estimate"] < x_train["bytes_as_uint8"]
    manifest = json.loads((out / "manifest_train.json").read_text())
    dropped = sorted(i for v in PLANTED.values() for i in v)
    assert manifest["dropped"] == len(dropped)
    assert manifest["kept"] == [i for i in range(160) if i not in dropped]
    assert len(json.loads((out / "manifest_valid.json").read_text())["kept"]) == 40  # leakage: train's problem
    assert (out / "flagged.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert montage_note(report["montage"]).startswith("flagged.png (9 tiles, at most 64;")
    assert len(report["montage"]) == sum(len(v) for v in PLANTED.values()) + 1  # + valid's leaked copy


def test_audit_with_nothing_flagged_writes_no_blank_montage_and_says_so(tiny_pcam, tmp_path, capsys):
    out = tmp_path / "audit"
    out.mkdir()
    (out / "flagged.png").write_bytes(b"from an earlier audit of other data")
    assert audit_cli.main([str(tiny_pcam), "--out", str(out)]) == 0
    report = json.loads((out / "audit.json").read_text())
    assert report["montage"] == [] and not (out / "flagged.png").exists()
    assert "no flagged.png (nothing flagged)" in capsys.readouterr().out


def test_filter_trains_on_the_clean_manifest_and_records_it(planted, audited, tmp_path):
    workdir = tmp_path / "run"
    lines = train_in_process(workdir, planted, **{"data.filter": True, "training.epochs": 1})
    assert any("training on 152 clean images, 8 dropped by the audit" in line for line in lines)
    info = json.loads((workdir / "config.json").read_text())["provenance"]["data"]["filter"]
    assert info["kept"] == 152 and info["dropped"] == 8 and len(info["manifest_blake2b"]) == 32


def test_a_resume_with_another_manifest_is_refused(planted, audited, tmp_path):
    """Another list of clean images is another training set (before: resumed on it, epoch 2 shorter);
    the same list in other bytes (a re-audit of the same files from elsewhere) is the same."""
    import shutil

    from jaxpcam.core.errors import UserError

    audit_dir = tmp_path / "audit"
    shutil.copytree(audited[1], audit_dir)
    workdir, filtered = tmp_path / "run", {"data.filter": True, "data.audit_dir": str(audit_dir)}
    train_in_process(workdir, planted, **filtered, **{"training.epochs": 1})
    manifest = audit_dir / "manifest_train.json"
    kept = manifest.read_text()
    edited = json.loads(kept)
    edited["kept"], edited["dropped"] = edited["kept"][:100], edited["dropped"] + len(edited["kept"]) - 100
    manifest.write_text(json.dumps(edited))
    before = (workdir / "metrics.jsonl").read_text()
    with pytest.raises(UserError, match=r"another data\.filter manifest: .*manifest_train\.json keeps other images"):
        train_in_process(workdir, planted, **filtered)
    assert (workdir / "metrics.jsonl").read_text() == before
    same = json.loads(kept)  # the same images kept, audited again from elsewhere: the same manifest
    same["data_dir"] = "/somewhere/else"
    manifest.write_text(json.dumps(same, indent=4))
    train_in_process(workdir, planted, **filtered)
    assert [r["epoch"] for r in map(json.loads, (workdir / "metrics.jsonl").read_text().splitlines())] == [1, 2]


def test_filter_without_an_audit_is_a_clear_error(tiny_pcam, tmp_path):
    args = tiny_overrides(tiny_pcam, **{"data.filter": True})
    result = run_main(["--config", "configs/mlp.py", f"--workdir={tmp_path / 'run'}", *args])
    assert result.returncode == 2
    assert "data.filter=True needs" in result.stderr and "python -m jaxpcam.audit" in result.stderr


def test_convert_rewrites_float32_as_chunked_compressed_uint8(planted, tmp_path, capsys):
    out = tmp_path / "uint8"
    assert audit_cli.main(["--convert", str(planted), str(out), "--compression", "gzip"]) == 0
    printed = capsys.readouterr().out
    assert "train:" in printed and "random single-image reads" in printed
    x_path, _ = split_paths(out, "train")
    with h5py.File(x_path) as f, h5py.File(split_paths(planted, "train")[0]) as g:
        assert f["x"].dtype == np.uint8 and f["x"].chunks == (1, 96, 96, 3) and f["x"].compression == "gzip"
        np.testing.assert_array_equal(f["x"][...], np.clip(g["x"][...], 0, 255).astype(np.uint8))
    assert x_path.stat().st_size < split_paths(planted, "train")[0].stat().st_size / 4
    np.testing.assert_array_equal(open_split(out, "train").labels, open_split(planted, "train").labels)


def test_audit_of_a_folder_without_pcam_files_is_a_clear_error(tmp_path, capsys):
    assert audit_cli.main([str(tmp_path)]) == 2
    assert "no camelyonpatch_level_2_split_train" in capsys.readouterr().err


def test_the_audit_folder_may_move_with_the_images_its_manifest_keeps(planted, audited, tmp_path):
    """data.audit_dir staged elsewhere with the data (before: refused as a changed config)."""
    import shutil

    first, staged = tmp_path / "audit", tmp_path / "staged" / "audit"
    shutil.copytree(audited[1], first)
    workdir = tmp_path / "run"
    train_in_process(workdir, planted, **{"data.filter": True, "data.audit_dir": str(first), "training.epochs": 1})
    shutil.copytree(first, staged)
    shutil.rmtree(first)
    lines = train_in_process(workdir, planted, **{"data.filter": True, "data.audit_dir": str(staged)})
    assert any(f"data.audit_dir {str(first)!r} -> {str(staged)!r}: its manifest keeps the images" in m for m in lines)
    assert [r["epoch"] for r in map(json.loads, (workdir / "metrics.jsonl").read_text().splitlines())] == [1, 2]


def test_a_moved_audit_folder_unused_resumes_and_one_config_json_cannot_vouch_for_is_refused(
    planted, audited, tmp_path
):
    import shutil

    from jaxpcam.core.errors import UserError

    unfiltered = tmp_path / "unfiltered"  # data.filter off: data.audit_dir is not read
    train_in_process(unfiltered, planted, **{"data.audit_dir": str(tmp_path / "a"), "training.epochs": 1})
    lines = train_in_process(unfiltered, planted, **{"data.audit_dir": str(tmp_path / "b")})
    assert any("data.audit_dir" in m and "unused (data.filter is off); resuming" in m for m in lines)

    first, staged = tmp_path / "audit", tmp_path / "staged"
    shutil.copytree(audited[1], first)
    shutil.copytree(audited[1], staged)
    workdir = tmp_path / "run"
    train_in_process(workdir, planted, **{"data.filter": True, "data.audit_dir": str(first), "training.epochs": 1})
    record = json.loads((workdir / "config.json").read_text())
    del record["provenance"]["data"]["filter"]["kept_blake2b"]  # a run from before that record
    (workdir / "config.json").write_text(json.dumps(record))
    with pytest.raises(UserError, match=r"config\.json does not record the images the run's manifest kept"):
        train_in_process(workdir, planted, **{"data.filter": True, "data.audit_dir": str(staged)})
