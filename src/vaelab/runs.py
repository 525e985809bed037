"""Run folders: atomic writes and reading back what a run left.

A run folder holds ``config.json``, ``history.csv``, ``model.keras``,
``metrics.json`` and figures. Every file is written under a temporary name in
the same folder and renamed into place, so a reader never sees half a file;
``metrics.json`` is written last and carries ``"complete": true``.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np


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


def write_json(path, values: dict) -> None:
    write_text(path, json.dumps(values, indent=2, sort_keys=False) + "\n")


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


def is_complete(run_dir) -> bool:
    path = Path(run_dir) / "metrics.json"
    try:
        return bool(read_json(path).get("complete"))
    except (OSError, ValueError):
        return False
