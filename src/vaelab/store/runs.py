"""Run folders: checks, the lock, config and results, and reading back what a run left.

A run folder holds ``config.json`` (every setting, the data's identity and the
environment), ``history.csv``, ``model.keras``, ``metrics.json`` and figures, each
written whole (:mod:`vaelab.store.files`); ``metrics.json`` is written last and carries
``"complete": true``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import platform
import shutil
import time
from pathlib import Path

import keras

import vaelab
from vaelab.core.config import TrainConfig, UsageError
from vaelab.core.models import VAE
from vaelab.core.models.described import check_described
from vaelab.core.models.vae import device_count
from vaelab.data import DataMismatch, Dataset
from vaelab.store.files import (atomic_path, check_output_file, read_history_csv, read_json,
                                read_npz, write_history_csv, write_json, write_npz, write_text)

__all__ = ["atomic_path", "check_output_file", "read_history_csv", "read_json", "read_npz",
           "write_history_csv", "write_json", "write_npz", "write_text"]  # for run readers


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
CHECKPOINT = "checkpoint"  # the per-epoch checkpoint folder (vaelab.training.checkpoint)


@contextlib.contextmanager
def locked(run_dir, *, shared: bool = False, hint: str = ""):
    """Hold the run folder's lock (an OS file lock on ``RUN_DIR/.vaelab.lock``).

    A writer (the default) holds it alone, and needs the folder writable: ``UsageError``
    otherwise. A reader that writes nothing into the folder (``shared``: ``sample`` or
    ``explore`` with ``--out`` elsewhere) shares it with other readers, so a run folder that
    is only readable (a teacher's runs, say) can still be read; where the lock file is absent
    and cannot be made there (no vaelab process with the right to write has ever locked it),
    or cannot be opened at all, the reader goes on without it. The lock dies with its process, so a killed run never
    leaves a stale lock. A writer that finds it held gets ``UsageError`` naming the folder
    and the PID of the writer that holds it. ``hint`` ends the line for an unwritable
    folder (e.g. ``"; --out writes elsewhere"``).
    """
    path = Path(run_dir) / LOCK
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except PermissionError:
        if not shared:
            raise UsageError(f"{run_dir} is not writable (this command writes into the run "
                             f"folder{hint})") from None
        try:
            fd = os.open(path, os.O_RDONLY)
        except (FileNotFoundError, PermissionError):  # never locked, or its lock is closed
            yield
            return
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = ""
            for _ in range(50):  # the holder writes its PID just after it takes the lock
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
                if holder.isdigit():
                    break
                time.sleep(0.01)
            who = f" (PID {holder})" if holder.isdigit() else ""
            raise UsageError(f"{run_dir} is in use by another vaelab process{who}; wait for "
                             f"it to finish or stop it") from None
        if not shared:
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


@contextlib.contextmanager
def open_run(run_dir, *, complete: bool | None = True, lock: bool = True,
             shared: bool = False, hint: str = ""):
    """Open a VAE run folder for every reader of one: its config read first (refusing a folder
    that is not a run, before the lock file is made in it), then the folder locked
    (``lock``; ``shared`` for a reader that writes nothing there, see :func:`locked`) and its
    config read again under the lock; ``complete=True`` requires a finished run, ``None``
    leaves it to the caller (a resume). Yields the config."""
    read_run_config(run_dir)
    with locked(run_dir, shared=shared, hint=hint) if lock else contextlib.nullcontext():
        config = read_run_config(run_dir)
        if complete:
            require_complete(run_dir)
        yield config


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


def load_vae(run_dir, input_dim: int | None = None, config: TrainConfig | None = None):
    """The run's VAE (``model.keras``, safe mode), checked against the data's image size and
    against the model ``config`` (the run's ``config.json``) describes."""
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
    if config is not None:
        check_described(vae, config, path, Path(run_dir) / "config.json")
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
