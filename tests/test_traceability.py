"""Every run says which data made it; later commands check they are given the same data."""

import gzip
import hashlib

import numpy as np
import pytest
from conftest import make_idx_dir

from vaelab import cli
from vaelab.core.config import TrainConfig
from vaelab.data import Dataset, idx, load_idx_dir, sources
from vaelab.store import runs
from vaelab.training.trainer import train

SMALL = dict(epochs=1, hidden_dim=16, latent_dim=3)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("trace")
    make_idx_dir(root / "a", n_train=64, n_test=32, seed=0)
    make_idx_dir(root / "b", n_train=64, n_test=32, seed=1)      # same sizes, other content
    make_idx_dir(root / "a-gz", n_train=64, n_test=32, seed=0, gz=True)  # a, compressed
    return root


@pytest.fixture(scope="module")
def array_run(folders):
    """A run trained on arrays passed in Python (the contents of folder a)."""
    train(TrainConfig(**SMALL), folders / "array-run", verbose=False,
          arrays=load_idx_dir(folders / "a"))
    return folders / "array-run"


def test_a_folder_is_identified_by_the_digests_of_its_files(folders):
    identity = Dataset.load(folders / "a").identity
    expected = {name: hashlib.sha256((folders / "a" / name).read_bytes()).hexdigest()
                for name in idx.FILES.values()}
    assert identity["files"] == expected and identity["name"] is None
    assert identity["path"] == str((folders / "a").absolute())
    # The same data compressed: the same file digests (of the uncompressed bytes), same content.
    compressed = Dataset.load(folders / "a-gz").identity
    assert compressed["files"] == expected and compressed["content"] == identity["content"]
    assert Dataset.load(folders / "b").identity["content"] != identity["content"]


def test_arrays_are_identified_by_content(folders):
    arrays = load_idx_dir(folders / "a")
    identity = Dataset.from_arrays(arrays).identity
    assert identity["content"] == Dataset.load(folders / "a").identity["content"]
    assert (identity["name"], identity["path"], identity["files"]) == (None, None, None)
    (x_train, y_train), test = arrays
    changed = x_train.copy()
    changed[0, 0, 0] ^= 1  # one pixel, one grey level
    assert Dataset.from_arrays(((changed, y_train), test)).identity["content"] != identity["content"]


def test_mnist_is_named_with_its_pinned_digests(monkeypatch, tmp_path):
    """A folder whose files have MNIST's pinned SHA-256 is recorded as "mnist" (pinned
    digests replaced by those of a small folder, as test_data does)."""
    make_idx_dir(tmp_path / "m", n_train=8, n_test=4)
    digests = {name: hashlib.sha256((tmp_path / "m" / name).read_bytes()).hexdigest()
               for name in idx.FILES.values()}
    monkeypatch.setattr(sources, "MNIST_SHA256", digests)
    identity = Dataset.load(tmp_path / "m").identity
    assert identity["name"] == "mnist" and identity["files"] == digests


def test_config_json_records_the_arrays_fingerprint(array_run, folders):
    data = runs.read_json(array_run / "config.json")["data"]
    assert data["name"] is None and data["path"] is None and data["files"] is None
    assert data["content"] == Dataset.load(folders / "a").identity["content"]


def test_evaluate_and_explore_need_the_arrays_data(array_run, folders, capsys):
    for command in (["evaluate", str(array_run), "--k", "2", "--quiet"],
                    ["explore", str(array_run), "--out", str(folders / "page.html")]):
        assert cli.main(command) == 2
        err = capsys.readouterr().err.strip()
        assert err == (f"vaelab: error: {array_run} was trained on arrays passed in Python; "
                       f"pass --data-dir with a folder of the same data")
        assert cli.main(command + ["--data-dir", str(folders / "b")]) == 2
        err = capsys.readouterr().err
        assert f"{array_run} was trained on other data (arrays passed in Python" in err
        assert "pass --data-dir with the run's data" in err
    assert not (array_run / "evaluation.json").exists() and not (folders / "page.html").exists()
    assert cli.main(["evaluate", str(array_run), "--k", "2", "--quiet",
                     "--data-dir", str(folders / "a-gz")]) == 0
    values = runs.read_json(array_run / "evaluation.json")
    assert (values["k"], values["seed"], values["test_images"]) == (2, 0, 32)
    assert values["data"]["content"] == runs.read_json(array_run / "config.json")["data"]["content"]
    assert cli.main(["explore", str(array_run), "--out", str(folders / "page.html"),
                     "--data-dir", str(folders / "a")]) == 0
    assert (folders / "page.html").read_text().startswith("<!DOCTYPE html>")


def test_a_folder_run_refuses_other_data(folders, capsys):
    run = folders / "folder-run"
    train(TrainConfig(**SMALL, data_dir=str(folders / "a")), run, verbose=False)
    assert cli.main(["evaluate", str(run), "--k", "2", "--quiet",
                     "--data-dir", str(folders / "b")]) == 2
    assert "was trained on other data" in capsys.readouterr().err
    # Without --data-dir the recorded folder is used, and it still holds the run's data.
    assert cli.main(["evaluate", str(run), "--k", "2", "--quiet"]) == 0


def test_gz_and_raw_idx_give_the_same_arrays(folders):
    raw, packed = load_idx_dir(folders / "a"), load_idx_dir(folders / "a-gz")
    for (x_raw, y_raw), (x_packed, y_packed) in zip(raw, packed):
        np.testing.assert_array_equal(x_raw, x_packed)
        np.testing.assert_array_equal(y_raw, y_packed)
    with gzip.open(folders / "a-gz" / "train-labels-idx1-ubyte.gz") as f:
        assert f.read() == (folders / "a" / "train-labels-idx1-ubyte").read_bytes()
