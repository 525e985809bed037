"""Files written whole or not at all: every file goes to a temporary name in its folder and is
renamed into place, so a reader never sees half a file. JSON is strict (a NaN is written
as ``null``), arrays are read with ``allow_pickle=False``, histories are CSV."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np

from vaelab.core.config import UsageError


def _file_mode() -> int:
    """The mode a plainly created file gets under the current umask (mkstemp uses 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; rename it to ``path`` on success."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path, text: str) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")


def _finite(value):
    """``value`` with every non-finite float replaced by ``None`` (JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def write_json(path, values: dict) -> None:
    """Strict JSON: a NaN or infinity is written as ``null``."""
    write_text(path, json.dumps(_finite(values), indent=2, allow_nan=False) + "\n")


def read_json(path) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write_npz(path, **arrays: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        np.savez(tmp, **arrays)


def read_npz(path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


def write_history_csv(path, history: dict[str, list]) -> None:
    """One row per epoch: ``epoch`` (1-based) then the columns in the given order."""
    columns = list(history)
    rows = len(next(iter(history.values()))) if history else 0
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["epoch", *columns])
    for i in range(rows):
        writer.writerow([i + 1, *(repr(float(history[c][i])) for c in columns)])
    write_text(path, buffer.getvalue())


def read_history_csv(path) -> dict[str, np.ndarray]:
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    return {name: np.array([float(r[i]) for r in body]) for i, name in enumerate(header)}


def check_output_file(path, option: str = "--out") -> Path:
    """A file about to be written: its folder must exist and be writable, and it must not
    be a folder itself. Returns the path."""
    path = Path(path)
    if str(path) in ("", "."):
        raise UsageError(f"{option} must name a file, received {str(path)!r}")
    if path.is_dir():
        raise UsageError(f"{option} {path} is a folder; name the file to write")
    parent = path.absolute().parent
    if not parent.is_dir():
        what = "does not exist" if not parent.exists() else "is not a folder"
        raise UsageError(f"{option} {path}: {parent} {what}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{option} {path}: {parent} is not writable")
    return path
