"""Run folders: checks, atomic writes, config and results, and reading back what a run left.

A run folder holds ``config.json`` (every setting, the data's identity and the
environment), ``history.csv``, ``model.keras``, ``metrics.json`` and figures. Every
file is written under a temporary name in the same folder and renamed into place, so
a reader never sees half a file; ``metrics.json`` is written last and carries
``"complete": true``.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import json
import math
import os
import platform
import shutil
import tempfile
from pathlib import Path

import keras
import numpy as np

import vaelab
from vaelab.config import TrainConfig, UsageError
from vaelab.data import DataMismatch, Dataset
from vaelab.devices import device_count
from vaelab.models import VAE


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


def is_complete(run_dir) -> bool:
    path = Path(run_dir) / "metrics.json"
    try:
        values = read_json(path)
    except (OSError, ValueError):
        return False
    return isinstance(values, dict) and values.get("complete") is True


# --------------------------------------------------------------------------
# The run folder as a whole

LOCK = ".vaelab.lock"  # the lock file of a run folder; holds the PID of its writer
RUN_FILES = ("config.json", "history.csv", "metrics.json", "model.keras", "lab_image.npz",
             "reconstructions.png", "samples.png", "latent.png", "curves.png", "explorer.html",
             "evaluation.json")
CHECKPOINT = "checkpoint"  # the per-epoch checkpoint folder (vaelab.checkpoint)


@contextlib.contextmanager
def locked(run_dir):
    """Hold the run folder's exclusive lock (an OS file lock on ``RUN_DIR/.vaelab.lock``).

    The lock dies with its process, so a killed run never leaves a stale lock. A second
    writer gets ``UsageError`` naming the folder and the PID that holds it.
    """
    path = Path(run_dir) / LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            who = f" (PID {holder})" if holder.isdigit() else ""
            raise UsageError(f"{run_dir} is in use by another vaelab process{who}; wait for "
                             f"it to finish or stop it") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def clear(run_dir) -> None:
    """Remove a previous run's files (vaelab's own only), its checkpoint and stale temporaries."""
    run_dir = Path(run_dir)
    for name in RUN_FILES:
        (run_dir / name).unlink(missing_ok=True)
    shutil.rmtree(run_dir / CHECKPOINT, ignore_errors=True)
    remove_temporaries(run_dir)


def remove_temporaries(run_dir) -> None:
    """Delete temporary files an interrupted write left (``.NAME.XXXX.tmpSUFFIX``)."""
    for path in (Path(run_dir), Path(run_dir) / CHECKPOINT):
        if path.is_dir():
            for stale in path.glob(".*.tmp*"):
                stale.unlink(missing_ok=True)


def is_empty_run_dir(run_dir) -> bool:
    """No file but the lock file."""
    return all(p.name == LOCK for p in Path(run_dir).iterdir())


def check_run_dir(run_dir: Path, overwrite: bool) -> None:
    """Refuse an output folder that cannot be used, before anything is written."""
    run_dir = Path(run_dir)
    if run_dir.exists():
        if not run_dir.is_dir():
            raise UsageError(f"--out {run_dir} exists and is not a folder")
        if not is_empty_run_dir(run_dir) and not overwrite:
            raise UsageError(f"--out {run_dir} exists and is not empty (pass --overwrite to reuse it)")
        if not os.access(run_dir, os.W_OK | os.X_OK):
            raise UsageError(f"--out {run_dir} is not writable")
    else:
        parent = next((p for p in run_dir.absolute().parents if p.exists()), None)
        if parent is None or not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
            raise UsageError(f"--out {run_dir} cannot be created ({parent} is not a writable folder)")


def make_run_dir(run_dir) -> None:
    try:
        Path(run_dir).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out {run_dir} cannot be created: {exc.strerror}") from None


def environment() -> dict:
    """Versions and devices: vaelab, Keras, its backend, Python (and JAX's devices and
    processes)."""
    info = {"vaelab": vaelab.__version__, "keras": keras.__version__,
            "backend": keras.backend.backend(), "python": platform.python_version()}
    if info["backend"] == "jax":
        import jax

        info["jax"] = jax.__version__
        info["devices"] = len(jax.devices())  # of all processes of a multi-process job
        info["data_parallel_devices"] = device_count()
        info["processes"] = jax.process_count()
    return info


def write_config(run_dir, config: TrainConfig, data: dict, fit: dict) -> None:
    """``config.json``: every setting, the KL scale in the loss (``effective_kl_scale`` = β ·
    ``kl_scale``), the data's identity, the fit settings, the environment."""
    effective = None if config.kl_scale is None else config.effective_kl_scale()
    write_json(Path(run_dir) / "config.json",
               {**config.to_dict(), "effective_kl_scale": effective, "data": data, "fit": fit,
                "environment": environment()})


def read_config(run_dir) -> dict:
    """``config.json`` as written; ``UsageError`` when the folder is not a run folder."""
    path = Path(run_dir) / "config.json"
    try:
        values = read_json(path)
    except FileNotFoundError:
        raise UsageError(f"{run_dir} is not a vaelab run folder (no config.json)") from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"{run_dir} is not a usable run folder ({path.name}: {exc})") from None
    if not isinstance(values, dict):
        raise UsageError(f"{run_dir} is not a usable run folder ({path.name} is not a JSON object)")
    return values


def read_run_config(run_dir) -> TrainConfig:
    """The config a VAE run folder was made with; ``UsageError`` if it is not one."""
    values = read_config(run_dir)
    if values.get("model") == "classifier":
        raise UsageError(f"{run_dir} is a classifier run, not a VAE run")
    try:
        return TrainConfig.from_dict(values)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"{run_dir} is not a usable run folder (config.json: {exc})") from None


def require_complete(run_dir) -> None:
    if not is_complete(run_dir):
        raise UsageError(f"{run_dir} is an incomplete run (no finished metrics.json); "
                         f"finish it with: vaelab train --resume {run_dir}")


def save_model(run_dir, model) -> None:
    with atomic_path(Path(run_dir) / "model.keras") as tmp:
        model.save(tmp)


def load_model(path) -> keras.Model:
    """``keras.models.load_model`` in safe mode; ``UsageError`` for a missing or damaged file."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path} is missing")
    try:
        return keras.models.load_model(path, safe_mode=True)
    except Exception as exc:  # Keras raises many kinds for a damaged file  # noqa: BLE001
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise UsageError(f"{path} cannot be read as a Keras model ({reason})") from None


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


def load_vae(run_dir, input_dim: int | None = None):
    """The run's VAE (``model.keras``, safe mode), checked against the data's image size."""
    path = Path(run_dir) / "model.keras"
    model = load_model(path)
    try:
        vae = VAE.from_model(model)
    except ValueError as exc:
        raise UsageError(f"{path}: {exc}") from None
    expected = vae.input_dim
    if input_dim is not None and expected != input_dim:
        raise UsageError(f"the model in {run_dir} expects {expected} pixels per image, the data "
                         f"has {input_dim}")
    return vae


def load_run_data(run_dir, config: TrainConfig, data_dir: str | None = None,
                  check: bool = True) -> Dataset:
    """The data a run was trained on, checked against its recorded fingerprint
    (``check=False``: checked later with :func:`check_run_data`).

    ``data_dir`` supplies them from another folder (needed for runs trained on arrays
    passed in Python); ``UsageError`` when the data are not the run's.
    """
    recorded = read_config(run_dir).get("data")
    if not isinstance(recorded, dict) or "content" not in recorded:
        raise UsageError(f"{run_dir}/config.json records no data fingerprint (made by an older "
                         f"vaelab?); train the run again")
    if data_dir is None:
        if recorded.get("name") is None and recorded.get("path") is None:
            raise UsageError(f"{run_dir} was trained on arrays passed in Python; pass --data-dir "
                             f"with a folder of the same data")
        data_dir = recorded.get("path") if recorded.get("name") is None else config.data_dir
    dataset = Dataset.load(data_dir, recorded.get("name") or config.dataset)
    if check:
        check_run_data(run_dir, dataset)
    return dataset


def check_run_data(run_dir, dataset: Dataset) -> None:
    """``UsageError`` unless ``dataset`` holds the data the run recorded."""
    try:
        dataset.check_same(read_config(run_dir).get("data") or {}, run_dir)
    except DataMismatch as exc:
        raise UsageError(str(exc)) from None
