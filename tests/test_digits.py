import gzip
import json

import h5py
import numpy as np
import pytest
from sklearn import metrics as skm

from conftest import run_main
from jaxpcam import evaluate, predict
from jaxpcam.core.errors import UserError
from jaxpcam.data.digits import create_digits_h5, load_mnist_idx, open_digits


def _write_idx(path, array, magic, gz):
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    with (gzip.open if gz else open)(path, "wb") as f:
        f.write(payload)


@pytest.fixture
def mnist_dir(tmp_path):
    rng = np.random.default_rng(0)
    for prefix, n, gz in (("train", 30, True), ("t10k", 10, False)):
        suffix = ".gz" if gz else ""
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte{suffix}", rng.integers(0, 256, (n, 28, 28)), 2051, gz)
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte{suffix}", np.arange(n) % 10, 2049, gz)
    return tmp_path


def test_idx_files_gzipped_or_not_are_read(mnist_dir):
    images, labels = load_mnist_idx(mnist_dir)
    assert images.shape == (40, 28, 28) and images.dtype == np.uint8
    assert labels.tolist() == [i % 10 for i in range(30)] + list(range(10))


def test_truncated_or_wrong_idx_files_are_clear_errors(mnist_dir):
    path = mnist_dir / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(UserError, match="truncated"):
        load_mnist_idx(mnist_dir)
    path.write_bytes((2049).to_bytes(4, "big") + b"\0" * 8)
    with pytest.raises(UserError, match="magic 2049, expected 2051"):
        load_mnist_idx(mnist_dir)


def test_writer_keeps_only_the_chosen_digits_from_mnist(mnist_dir, tmp_path):
    out = create_digits_h5(tmp_path / "d.h5", labels_to_keep=(4, 5, 6, 7, 8, 9), mnist_dir=mnist_dir)
    with h5py.File(out) as f:
        assert f["images"].shape[1:] == (28, 28) and f["images"].dtype == np.uint8
        assert set(f["labels"][...].tolist()) == {4, 5, 6, 7, 8, 9}
        assert len(f["labels"]) == 3 * 6 + 6  # digits 4-9 among 0..29 % 10, and 4-9 of 0..9


def test_sklearn_digits_are_real_and_remapped_at_load_time_only(tmp_path):
    path = create_digits_h5(tmp_path / "d.h5")
    with h5py.File(path) as f:
        stored = f["labels"][...].copy()
    assert set(stored.tolist()) == {4, 5, 6, 7, 8, 9} and len(stored) > 1000
    train, valid = open_digits(path, (4, 5, 6, 7, 8, 9), seed=3)
    assert set(train.labels.tolist()) == set(range(6))
    assert len(valid) == round(len(stored) * 0.1) and len(train) + len(valid) == len(stored)
    with h5py.File(path) as f:
        np.testing.assert_array_equal(f["labels"][...], stored)  # the file is not rewritten
    assert train.read(np.array([0, 1])).shape == (2, 28, 28, 1)


def test_split_is_seeded(tmp_path):
    path = create_digits_h5(tmp_path / "d.h5")
    a, _ = open_digits(path, (4, 5, 6, 7, 8, 9), seed=1)
    b, _ = open_digits(path, (4, 5, 6, 7, 8, 9), seed=1)
    c, _ = open_digits(path, (4, 5, 6, 7, 8, 9), seed=2)
    np.testing.assert_array_equal(a.images, b.images)
    assert not np.array_equal(a.labels, c.labels)


def test_labels_outside_the_chosen_digits_are_a_clear_error(tmp_path):
    path = create_digits_h5(tmp_path / "d.h5", labels_to_keep=(3, 4))
    with pytest.raises(UserError, match=r"labels \[3\] are not among data.digits \(4, 5\)"):
        open_digits(path, (4, 5), seed=0)


def test_smlp_digits_config_trains_end_to_end_and_evaluates(tmp_path, monkeypatch):
    workdir = tmp_path / "run"
    args = ["--config", "configs/smlp_digits.py", f"--workdir={workdir}", "--config.training.epochs=8"]
    result = run_main(args, env_extra={"JAXPCAM_DATA_CACHE": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    last = records[-1]
    assert last["val_accuracy"] > 0.9 and last["val_balanced_accuracy"] > 0.9
    assert {"val_macro_precision", "val_macro_recall", "val_macro_f1"} <= last.keys()
    assert (tmp_path / "cache" / "digits-456789-sklearn.h5").is_file()

    monkeypatch.setenv("JAXPCAM_DATA_CACHE", str(tmp_path / "cache"))
    assert evaluate.main(["--workdir", str(workdir)]) == 0
    result = json.loads((workdir / "eval" / "valid" / "metrics.json").read_text())
    rows = np.genfromtxt(workdir / "eval" / "valid" / "predictions.csv", delimiter=",", names=True)
    digits = np.arange(4, 10)  # classes are named by their digit, in predictions.csv as in the report
    probs = np.column_stack([rows[f"prob_{d}"] for d in digits])
    assert np.array_equal(rows["predicted"], digits[probs.argmax(axis=1)])
    assert result["model"]["accuracy"] == skm.accuracy_score(rows["label"], digits[probs.argmax(axis=1)])
    assert result["model"]["accuracy"] > result["majority_baseline"]["accuracy"] + 0.5
    assert set(result["model"]["per_class"]) == {str(d) for d in digits}
    assert result["threshold"] is None and (workdir / "eval" / "valid" / "mistakes.png").is_file()
    # calibration and uncertainty for a multi-class task too (no temperature: that comes with a threshold)
    assert result["calibration"]["temperature"] == 1.0 and 0 <= result["calibration"]["ece"] <= 1
    entropy = -np.sum(np.where(probs > 0, probs * np.log2(np.where(probs > 0, probs, 1)), 0), axis=1)
    np.testing.assert_allclose(rows["uncertainty"], entropy, atol=1e-9)
    assert result["uncertainty"]["measure"] == "entropy" and result["slide_level"] is None
    assert evaluate.main(["--workdir", str(workdir), "--split", "test"]) == 2  # digits have no test split

    # predict takes the task's own layouts: the digits file, and (N, 28, 28) arrays
    digits_file = tmp_path / "cache" / "digits-456789-sklearn.h5"
    with h5py.File(digits_file, "r") as f:
        images = f["images"][:10]
    np.save(tmp_path / "ten.npy", images)
    np.save(tmp_path / "one.npy", images[0])
    for source, count in ((digits_file, None), (tmp_path / "ten.npy", 10), (tmp_path / "one.npy", 1)):
        output = tmp_path / f"{source.stem}.csv"
        assert predict.main(["--workdir", str(workdir), "--input", str(source), "--output", str(output)]) == 0
        rows = np.genfromtxt(output, delimiter=",", names=True)
        assert len(np.atleast_1d(rows)) == (count or len(h5py.File(digits_file, "r")["images"]))
