"""A run's data: flattened images in [0, 1], labels, image shape and an identity.

``Dataset.load(data_dir)`` reads a folder (or verified MNIST), ``Dataset.from_arrays``
takes arrays passed in Python; both record where the data came from and a content
fingerprint, so a run folder can say which data made it and later commands can check
they are given the same. ``dataset.select(...)`` is the subset and preparation a run
trains and tests on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path

import numpy as np

from vaelab.choices import DATASET_TITLES
from vaelab.data.idx import DataError, idx_digests, load_idx_dir, to_vectors
from vaelab.data.sources import DATASETS, pins, resolve_data_dir


class DataMismatch(ValueError):
    """Data given for a run are not the data it was trained on."""


def _as_vectors(name: str, x) -> tuple[np.ndarray, tuple[int, ...]]:
    """Images as float32 ``(n, pixels)`` in [0, 1], and the shape of one image."""
    x = np.asarray(x)
    if x.dtype == np.uint8 and x.ndim == 3:
        return to_vectors(x), tuple(int(d) for d in x.shape[1:])
    if x.ndim != 2 or not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{name} must be uint8 images (n, h, w) or float vectors (n, pixels), "
                         f"received dtype {x.dtype} and shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or infinite values")
    if x.size:
        low, high = float(x.min()), float(x.max())
        if low < 0 or high > 1:
            raise ValueError(f"{name} must lie in [0, 1], received values in [{low:g}, {high:g}]")
    side = int(round(np.sqrt(x.shape[1])))
    shape = (side, side) if side * side == x.shape[1] else (x.shape[1],)
    return x.astype(np.float32, copy=False), shape


def content_fingerprint(*arrays: np.ndarray) -> str:
    """SHA-256 over the dtype, shape and bytes of each array, in order."""
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape};".encode())
        digest.update(array.data)
    return digest.hexdigest()


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Images as float32 ``(n, pixels)`` rows in [0, 1] and integer labels ``(n,)``.

    Attributes:
        image_shape: the shape of one image, ``(rows, cols)``.
        identity: where the data came from and their fingerprint: ``{"name"`` (``"mnist"``
            or ``None``), ``"path"`` (absolute folder or ``None`` for arrays), ``"files"``
            (SHA-256 of each uncompressed IDX file, or ``None``), ``"content"`` (SHA-256 of
            the four arrays as used, see :func:`content_fingerprint`)``}``.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    image_shape: tuple[int, ...]
    identity: dict

    @property
    def input_dim(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def classes(self) -> int:
        """``1 + the largest label`` over both splits (labels are ``0 … classes − 1``)."""
        return int(max(self.y_train.max(initial=0), self.y_test.max(initial=0))) + 1

    @classmethod
    def from_arrays(cls, arrays, identity: dict | None = None) -> "Dataset":
        """``((x_train, y_train), (x_test, y_test))``: uint8 images ``(n, h, w)`` or float
        vectors ``(n, pixels)`` in [0, 1]. ``ValueError`` names what is wrong."""
        (x_train, y_train), (x_test, y_test) = arrays
        x_train, shape = _as_vectors("x_train", x_train)
        x_test, _ = _as_vectors("x_test", x_test)
        for name, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
            if len(x) == 0:
                raise ValueError(f"there are no {name} images")
            if np.ndim(y) != 1 or len(y) != len(x):
                raise ValueError(f"{name} labels must be one per image: {len(x)} images, "
                                 f"labels of shape {np.shape(y)}")
        if x_train.shape[1] == 0:
            raise ValueError(f"the images have no pixels (shape {shape})")
        if x_train.shape[1] != x_test.shape[1]:
            raise ValueError(f"train and test images differ in size: {x_train.shape[1]} and "
                             f"{x_test.shape[1]} pixels")
        y_train, y_test = (np.asarray(y).astype(np.int64) for y in (y_train, y_test))
        content = content_fingerprint(x_train, y_train, x_test, y_test)
        identity = {"name": None, "path": None, "files": None, **(identity or {}),
                    "content": content}
        return cls(x_train, y_train, x_test, y_test, shape, identity)

    @classmethod
    def load(cls, data_dir: str | os.PathLike | None = None,
             dataset: str = "mnist") -> "Dataset":
        """A folder of MNIST-format IDX files, or the verified named ``dataset`` when
        ``data_dir`` is ``None`` (see :func:`vaelab.data.sources.resolve_data_dir`). A folder
        whose files have a named dataset's pinned SHA-256 is recorded under that name."""
        folder, origin = resolve_data_dir(data_dir, dataset=dataset)
        arrays = load_idx_dir(folder)
        # The cache of a named dataset was just verified against its pins: no second hashing.
        files = idx_digests(folder) if origin == "explicit folder" else dict(pins(dataset))
        name = next((n for n in DATASETS if files == pins(n)), None)
        path = None if name is not None and origin != "explicit folder" else str(Path(folder).absolute())
        try:
            return cls.from_arrays(arrays, {"name": name, "path": path, "files": files})
        except ValueError as exc:
            raise DataError(f"{folder}: {exc}") from None

    def select(self, train_size: int | None, test_size: int | None, likelihood,
               seed: int = 0) -> "Dataset":
        """The first ``train_size`` / ``test_size`` images, the test set prepared for
        ``likelihood`` (a :mod:`vaelab.core.likelihoods` object; ``seed`` for its binarization)."""
        n_train = self._size("--train-size", train_size, len(self.x_train), "training")
        n_test = self._size("--test-size", test_size, len(self.x_test), "test")
        return dataclasses.replace(
            self, x_train=self.x_train[:n_train], y_train=self.y_train[:n_train],
            x_test=likelihood.prepare_test(self.x_test[:n_test], seed), y_test=self.y_test[:n_test])

    def _size(self, option: str, size: int | None, available: int, split: str) -> int:
        """``size`` images of ``available`` (all for ``None``); ``DataError`` for more than
        there are, rather than silently fewer."""
        if size is None:
            return available
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
            raise DataError(f"{option} must be a positive integer, received {size!r}")
        if size > available:
            raise DataError(f"{option} {size} is more than the {available} {split} images of "
                            f"{self.describe()}")
        return int(size)

    def describe(self) -> str:
        """The data in a message: the named dataset, the folder, or arrays passed in."""
        name = self.identity.get("name")
        if name is not None:
            return DATASET_TITLES.get(name, name)
        return self.identity.get("path") or "the arrays given"

    def check_same(self, recorded: dict, run_dir) -> None:
        """``DataMismatch`` unless these are the data a run recorded (compared by content)."""
        if recorded.get("content") == self.identity["content"]:
            return
        where = recorded.get("name") or recorded.get("path") or "arrays passed in Python"
        given = self.identity.get("name") or self.identity.get("path")
        raise DataMismatch(
            f"{run_dir} was trained on other data ({where}, content {recorded.get('content', '?')[:12]}…) "
            f"than {given} (content {self.identity['content'][:12]}…); pass --data-dir with the "
            f"run's data")
