"""MNIST-format (IDX) files: reading any folder of them, any image size.

The IDX format (LeCun et al., "THE MNIST DATABASE of handwritten digits") is
a big-endian header -- two zero bytes, a type code (0x08 = unsigned byte) and
the number of dimensions -- then one 32-bit size per dimension, then the data.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from pathlib import Path

import numpy as np

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

_IDX_UBYTE = 0x08


class DataError(Exception):
    """A data folder or file cannot be used; the message is one line."""


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, decompressed when its name ends in ``.gz``."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None


def read_idx(path: str | os.PathLike, ndim: int) -> np.ndarray:
    """Read one unsigned-byte IDX file (raw or gzip) with ``ndim`` dimensions.

    Returns a uint8 array whose shape is the header's dimensions. Raises
    ``DataError`` for a wrong magic number, a dimension count other than
    ``ndim``, or a file whose length does not match its header.
    """
    path = Path(path)
    raw = _read_bytes(path)
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


def find(folder: Path, name: str) -> Path | None:
    """``folder/name`` or ``folder/name.gz``, whichever exists (``None`` if neither).

    ``DataError`` when both exist with different contents: which one is meant is unclear.
    """
    raw, packed = Path(folder) / name, Path(folder) / f"{name}.gz"
    if raw.is_file() and packed.is_file():
        if _read_bytes(raw) != _read_bytes(packed):
            raise DataError(f"{raw} and {packed.name} both exist with different contents; "
                            f"keep one of them")
        return raw
    return next((p for p in (raw, packed) if p.is_file()), None)


def _find(folder: Path, name: str) -> Path:
    found = find(folder, name)
    if found is None:
        raise DataError(f"missing {name} (or {name}.gz) in {folder}")
    return found


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
    return x.reshape(x.shape[0], x.shape[1] * x.shape[2]).astype(np.float32) / np.float32(255.0)


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def digest(path: Path) -> str:
    """SHA-256 of a file's bytes, uncompressed when its name ends in ``.gz``."""
    return hashlib.sha256(_read_bytes(path)).hexdigest()


def idx_digests(folder: str | os.PathLike) -> dict[str, str]:
    """SHA-256 of each of the four IDX files of ``folder``, uncompressed (raw or ``.gz``)."""
    folder = Path(folder)
    return {name: hashlib.sha256(_read_bytes(_find(folder, name))).hexdigest()
            for name in FILES.values()}
