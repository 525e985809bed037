import gzip
import hashlib
import os
import shutil

import numpy as np
import pytest
from conftest import make_idx_dir, write_idx

from vaelab import cli, data
from vaelab.data import idx, sources
from vaelab.data import DataError, Source, load_idx_dir


# ---------------------------------------------------------------- IDX reader


@pytest.mark.parametrize("gz", [False, True])
def test_load_idx_dir_round_trip(tmp_path, gz):
    arrays = make_idx_dir(tmp_path, n_train=7, n_test=3, side=5, gz=gz)
    (x_train, y_train), (x_test, y_test) = data.load_idx_dir(tmp_path)
    assert x_train.dtype == np.uint8 and x_train.shape == (7, 5, 5)
    np.testing.assert_array_equal(x_train, arrays["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(y_train, arrays["train-labels-idx1-ubyte"])
    np.testing.assert_array_equal(x_test, arrays["t10k-images-idx3-ubyte"])
    np.testing.assert_array_equal(y_test, arrays["t10k-labels-idx1-ubyte"])


@pytest.mark.parametrize("gz", [False, True])
def test_wrong_magic(tmp_path, gz):
    make_idx_dir(tmp_path, gz=gz)
    name = "train-labels-idx1-ubyte" + (".gz" if gz else "")
    # A labels file written with three dimensions has magic 0x00000803.
    os.remove(tmp_path / name)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros((60, 1, 1)), gz=gz)
    with pytest.raises(DataError, match=r"wrong magic number .*0x00000803, expected 0x00000801"):
        data.load_idx_dir(tmp_path)


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_file(tmp_path, gz):
    make_idx_dir(tmp_path, gz=gz)
    path = tmp_path / "t10k-images-idx3-ubyte"
    raw = path.read_bytes() if not gz else None
    if gz:
        import gzip
        with gzip.open(f"{path}.gz", "rb") as f:
            raw = f.read()
        with gzip.open(f"{path}.gz", "wb") as f:
            f.write(raw[:-10])
    else:
        path.write_bytes(raw[:-10])
    with pytest.raises(DataError, match=r"truncated IDX file .*t10k-images"):
        data.load_idx_dir(tmp_path)


def test_truncated_header(tmp_path):
    make_idx_dir(tmp_path)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(bytes([0, 0, 8, 3, 0, 0]))
    with pytest.raises(DataError, match="truncated IDX file .*header needs 16"):
        data.load_idx_dir(tmp_path)


def test_corrupt_gzip(tmp_path):
    make_idx_dir(tmp_path, gz=True)
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="cannot read .*train-images"):
        data.load_idx_dir(tmp_path)


def test_count_mismatch(tmp_path):
    make_idx_dir(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(59))
    with pytest.raises(DataError, match="count mismatch .*train images has 60 items, train labels has 59"):
        data.load_idx_dir(tmp_path)


def test_missing_file_and_folder(tmp_path):
    make_idx_dir(tmp_path)
    os.remove(tmp_path / "t10k-labels-idx1-ubyte")
    with pytest.raises(DataError, match="missing t10k-labels-idx1-ubyte"):
        data.load_idx_dir(tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        data.load_idx_dir(tmp_path / "nowhere")


def test_unreadable_folder(tmp_path, monkeypatch):
    make_idx_dir(tmp_path / "d")
    # Root may read any folder, so permissions are simulated through os.access.
    monkeypatch.setattr(idx.os, "access", lambda path, mode: False)
    with pytest.raises(DataError, match="is not readable"):
        data.load_idx_dir(tmp_path / "d")


def test_to_vectors():
    x = np.array([[[0, 255], [51, 102]]], dtype=np.uint8)
    v = data.to_vectors(x)
    assert v.dtype == np.float32 and v.shape == (1, 4)
    np.testing.assert_allclose(v, [[0.0, 1.0, 0.2, 0.4]], rtol=1e-6)
    with pytest.raises(ValueError, match=r"received shape \(4,\)"):
        data.to_vectors(np.zeros(4, np.uint8))
    with pytest.raises(ValueError, match="received dtype float64"):
        data.to_vectors(np.zeros((1, 2, 2)))


# ---------------------------------------------------------------- sources and cache


def fake_mnist_files(folder):
    """Four files plus the checksums that would make them 'MNIST'."""
    make_idx_dir(folder, n_train=4, n_test=2, side=3)
    return {name: hashlib.sha256((folder / name).read_bytes()).hexdigest()
            for name in sources.MNIST_SHA256}


def copying_source(name, origin, calls):
    def fetch(staging):
        calls.append(name)
        for f in sources.MNIST_SHA256:
            (staging / f).write_bytes((origin / f).read_bytes())
    return Source(name, fetch)


def failing_source(name, calls):
    def fetch(staging):
        calls.append(name)
        raise DataError("unreachable")
    return Source(name, fetch)


@pytest.fixture
def fake_mnist(tmp_path, monkeypatch):
    origin = tmp_path / "origin"
    monkeypatch.setattr(sources, "MNIST_SHA256", fake_mnist_files(origin))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("VAELAB_DATA_DIR", raising=False)
    return origin


def test_failing_source_falls_through_and_fills_cache(fake_mnist):
    calls = []
    sources = [failing_source("a", calls), copying_source("b", fake_mnist, calls)]
    assert data.fetch_mnist(sources=sources) == "b"
    assert calls == ["a", "b"]
    assert all(s == "ok" for s in data.checksum_status(data.cache_dir()).values())


def test_cache_beats_network(fake_mnist):
    calls = []
    sources = [copying_source("net", fake_mnist, calls)]
    data.fetch_mnist(sources=sources)
    assert data.fetch_mnist(sources=sources) == "cache"
    (x, _), _ = data.load_mnist(sources=sources)
    assert calls == ["net"] and x.shape == (4, 3, 3)


def test_explicit_dir_beats_cache(fake_mnist, tmp_path, monkeypatch):
    calls = []
    other = tmp_path / "other"
    make_idx_dir(other, n_train=9, n_test=1, side=2)
    (x, _), _ = data.load_mnist(other, sources=[failing_source("net", calls)])
    assert x.shape == (9, 2, 2) and calls == []
    monkeypatch.setenv("VAELAB_DATA_DIR", str(other))
    (x, _), _ = data.load_mnist(sources=[failing_source("net", calls)])
    assert x.shape == (9, 2, 2) and calls == []


def test_bad_checksum_falls_through_and_never_enters_cache(fake_mnist, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(fake_mnist, bad)
    (bad / "t10k-labels-idx1-ubyte").write_bytes(b"\0\0\x08\x01\0\0\0\0")
    calls = []
    with pytest.raises(DataError, match="checksum mismatch for t10k-labels-idx1-ubyte: expected"):
        data.fetch_mnist(sources=[copying_source("bad", bad, calls)])
    assert not data.cache_dir().exists() or not any(data.cache_dir().iterdir())
    assert data.fetch_mnist(sources=[copying_source("bad", bad, calls),
                                     copying_source("good", fake_mnist, calls)]) == "good"


def test_no_source_error_lists_all_and_says_how(fake_mnist):
    calls = []
    with pytest.raises(DataError) as info:
        data.fetch_mnist(sources=[failing_source("first", calls), failing_source("second", calls)])
    message = str(info.value)
    assert "\n" not in message
    assert "first: unreachable" in message and "second: unreachable" in message
    assert "--data-dir" in message and "VAELAB_DATA_DIR" in message


def test_interrupted_cache_write_leaves_nothing(fake_mnist, monkeypatch):
    """A copy that dies midway leaves no file that passes as data, and no temp file."""
    calls = []
    real_copy = shutil.copyfile
    count = {"n": 0}

    def dying_copy(src, dst, *args, **kwargs):
        count["n"] += 1
        if count["n"] == 3:
            with open(dst, "wb") as f:
                f.write(b"\0\0\x08")
            raise OSError("disk full")
        return real_copy(src, dst, *args, **kwargs)

    monkeypatch.setattr(sources.shutil, "copyfile", dying_copy)
    with pytest.raises(OSError, match="disk full"):
        data.fetch_mnist(sources=[copying_source("net", fake_mnist, calls)])
    cache = data.cache_dir()
    names = sorted(p.name for p in cache.iterdir())
    assert not any(n.endswith(".part") for n in names)
    status = data.checksum_status(cache)
    assert all(s in ("ok", "missing") for s in status.values())
    assert list(status.values()).count("ok") == 2
    monkeypatch.setattr(sources.shutil, "copyfile", real_copy)
    assert data.fetch_mnist(sources=[copying_source("net", fake_mnist, calls)]) == "net"


# ---------------------------------------------------------------- CLI


def test_cli_data_info_on_any_folder(idx_dir, capsys):
    assert cli.main(["data", "info", "--data-dir", str(idx_dir)]) == 0
    out = capsys.readouterr().out
    assert "60 images of 28x28" in out and "not verified MNIST" in out


def test_cli_data_error_exit_2(tmp_path, capsys):
    make_idx_dir(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(3))
    assert cli.main(["data", "info", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vaelab: error: count mismatch") and err.count("\n") == 1
    assert "Traceback" not in err


# ---------------------------------------------------------------- real MNIST


@pytest.mark.mnist
def test_real_mnist(mnist):
    (x_train, y_train), (x_test, y_test) = mnist
    assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
    assert x_train.dtype == np.uint8 and y_train.dtype == np.uint8
    assert x_train.max() == 255 and x_train.min() == 0
    np.testing.assert_array_equal(np.bincount(y_train),
                                  [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949])
    np.testing.assert_array_equal(y_train[:10], [5, 0, 4, 1, 9, 2, 1, 3, 1, 4])
    assert all(s == "ok" for s in data.checksum_status(data.cache_dir()).values())


def test_mnist_stored_as_gz_only_is_reported_as_verified(fake_mnist, tmp_path, capsys):
    packed = tmp_path / "packed"
    packed.mkdir()
    for path in fake_mnist.iterdir():
        (packed / f"{path.name}.gz").write_bytes(gzip.compress(path.read_bytes()))
    assert data.checksum_status(packed) == {name: "ok" for name in sources.MNIST_SHA256}
    assert cli.main(["data", "info", "--data-dir", str(packed)]) == 0
    assert "checksums:     verified MNIST (all four SHA-256 match)" in capsys.readouterr().out


def test_fashion_mnist_from_an_installed_debian_folder(tmp_path, monkeypatch):
    """The Debian source reads the package's .gz files when the package is installed."""
    shipped = tmp_path / "usr-share"
    make_idx_dir(shipped, n_train=6, n_test=3, side=4, gz=True)
    raw = tmp_path / "raw"
    make_idx_dir(raw, n_train=6, n_test=3, side=4)
    digests = {name: hashlib.sha256((raw / name).read_bytes()).hexdigest()
               for name in sources.FASHION_MNIST_SHA256}
    monkeypatch.setattr(sources, "FASHION_MNIST_SHA256", digests)
    monkeypatch.setattr(sources, "DEBIAN_FOLDER", shipped)
    cache = tmp_path / "cache"
    debian = [s for s in sources.default_sources("fashion-mnist") if "Debian" in s.name]
    assert data.fetch_mnist(cache, debian, dataset="fashion-mnist") == \
        "Debian package dataset-fashion-mnist"
    assert data.checksum_status(cache, "fashion-mnist") == {n: "ok" for n in digests}
    assert data.fetch_mnist(cache, [], dataset="fashion-mnist") == "cache"


@pytest.mark.mnist
def test_fashion_mnist_checksums_are_verified_by_the_projects_fetch(tmp_path, monkeypatch):
    """Real Fashion-MNIST through the source chain (the mirrors are unreachable here, so
    Debian's package supplies it): all four pinned SHA-256 match, and the data look right."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    origin = data.fetch_mnist(dataset="fashion-mnist")
    assert origin in {f"mirror {u}" for u in sources.MIRRORS["fashion-mnist"]} | {
        "Debian package dataset-fashion-mnist"}
    folder = data.cache_dir("fashion-mnist")
    assert data.checksum_status(folder, "fashion-mnist") == {
        name: "ok" for name in sources.FASHION_MNIST_SHA256}
    (x_train, y_train), (x_test, y_test) = load_idx_dir(folder)
    assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
    assert list(y_train[:10]) == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert np.bincount(y_test).tolist() == [1000] * 10
    from vaelab.data import Dataset

    assert Dataset.load(folder).identity["name"] == "fashion-mnist"


def test_a_damaged_cached_file_is_replaced_and_said_so(fake_mnist, capsys):
    calls = []
    source = [copying_source("the mirror", fake_mnist, calls)]
    data.fetch_mnist(sources=source)
    cache = data.cache_dir()
    (cache / "t10k-labels-idx1-ubyte").write_bytes(b"damaged")
    capsys.readouterr()
    assert data.fetch_mnist(sources=source) == "the mirror"
    assert capsys.readouterr().err.strip() == (
        f"vaelab: the cached MNIST file(s) t10k-labels-idx1-ubyte in {cache} did not match "
        f"their SHA-256; replaced with verified copies from the mirror")
    assert data.checksum_status(cache) == {name: "ok" for name in sources.MNIST_SHA256}
    assert data.fetch_mnist(sources=source) == "cache" and calls == ["the mirror"] * 2
    assert capsys.readouterr().err == ""  # a verified cache: nothing to say


def test_data_info_names_the_dataset_a_folder_verifies_as(fake_mnist, monkeypatch, capsys):
    """A verified Fashion-MNIST folder checked as MNIST is not "damaged": it says which
    named dataset it is."""
    fashion = {name: digest for name, digest in sources.MNIST_SHA256.items()}
    monkeypatch.setattr(sources, "FASHION_MNIST_SHA256", fashion)
    monkeypatch.setattr(sources, "MNIST_SHA256", {n: "0" * 64 for n in fashion})
    assert cli.main(["data", "info", "--data-dir", str(fake_mnist)]) == 0
    assert ("checksums:     verified Fashion-MNIST (all four SHA-256 match); "
            "use --dataset fashion-mnist") in capsys.readouterr().out
