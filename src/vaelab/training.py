"""Train one VAE and write its run folder: ``train(config, run_dir) -> metrics``.

The run folder (see ``vaelab.runs``) gets ``config.json`` first, then, after
training, ``model.keras``, ``history.csv``, the figures and ``metrics.json``
last, which marks the run complete.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np

import vaelab
from vaelab import data as data_module
from vaelab import explorer, metrics, plots, runs
from vaelab.config import NonFiniteLoss, TrainConfig, UsageError, format_scale
from vaelab.devices import check_divisible, device_count, distribution_scope, predict

HELDOUT = 1000       # test images in the fixed batch the collapse monitor watches
LAB_IMAGE = 1        # the lab's x_train[2, ] in R (1-based) is index 1 here
GRID = 8             # test images in reconstructions.png
SAMPLES = 32         # prior samples in samples.png
CHECKPOINT = "checkpoint"  # folder of the per-epoch checkpoint inside a run folder
VALIDATION_BATCH = 1000     # images per validation step
MAX_STEPS_PER_EXECUTION = 128  # training steps per compiled call (JAX scan), at most
TEST_BINARIZATION_SEED = 0  # Bernoulli runs: the test set is binarized once, with this seed


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Flattened images in [0, 1]: ``x_*`` float32 ``(n, pixels)``, ``y_*`` uint8 ``(n,)``."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def input_dim(self) -> int:
        return self.x_train.shape[1]


def _as_vectors(name: str, x) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype == np.uint8 and x.ndim == 3:
        return data_module.to_vectors(x)
    if x.ndim != 2 or not np.issubdtype(x.dtype, np.floating):
        raise UsageError(f"{name} must be uint8 images (n, h, w) or float vectors (n, pixels), "
                         f"received dtype {x.dtype} and shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise UsageError(f"{name} contains NaN or infinite values")
    low, high = float(x.min()), float(x.max())
    if low < 0 or high > 1:
        raise UsageError(f"{name} must lie in [0, 1], received values in [{low:g}, {high:g}]")
    return x.astype(np.float32, copy=False)


def load_dataset(config: TrainConfig, arrays=None) -> Dataset:
    """The run's data: ``arrays`` (``((x_train, y_train), (x_test, y_test))``) or the data folder."""
    if arrays is None:
        arrays = data_module.load_mnist(config.data_dir)
    (x_train, y_train), (x_test, y_test) = arrays
    x_train, x_test = _as_vectors("x_train", x_train), _as_vectors("x_test", x_test)
    if x_train.shape[1] != x_test.shape[1]:
        raise UsageError(f"train and test images differ in size: {x_train.shape[1]} and "
                         f"{x_test.shape[1]} pixels")
    n_train = len(x_train) if config.train_size is None else min(config.train_size, len(x_train))
    n_test = len(x_test) if config.test_size is None else min(config.test_size, len(x_test))
    if config.batch_size > n_train:
        raise UsageError(f"batch-size {config.batch_size} is larger than the {n_train} training images")
    if n_train <= LAB_IMAGE:
        raise UsageError(f"need at least {LAB_IMAGE + 1} training images, received {n_train}")
    x_test = x_test[:n_test]
    if config.likelihood == "bernoulli":  # binarized once, with a seed fixed across runs
        rng = np.random.default_rng(TEST_BINARIZATION_SEED)
        x_test = (rng.random(x_test.shape, dtype=np.float32) < x_test).astype(np.float32)
    return Dataset(x_train[:n_train], np.asarray(y_train)[:n_train],
                   x_test, np.asarray(y_test)[:n_test])


def check_run_dir(run_dir: Path, overwrite: bool) -> None:
    """Refuse an output folder that cannot be used, before anything is written."""
    if run_dir.exists():
        if not run_dir.is_dir():
            raise UsageError(f"--out {run_dir} exists and is not a folder")
        if any(run_dir.iterdir()) and not overwrite:
            raise UsageError(f"--out {run_dir} exists and is not empty (pass --overwrite to reuse it)")
        if not os.access(run_dir, os.W_OK | os.X_OK):
            raise UsageError(f"--out {run_dir} is not writable")
    else:
        parent = next((p for p in run_dir.absolute().parents if p.exists()), None)
        if parent is None or not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
            raise UsageError(f"--out {run_dir} cannot be created ({parent} is not a writable folder)")


def environment() -> dict:
    import keras

    info = {"vaelab": vaelab.__version__, "keras": keras.__version__,
            "backend": keras.backend.backend(), "python": platform.python_version()}
    if info["backend"] == "jax":
        import jax

        info["jax"] = jax.__version__
        info["devices"] = len(jax.devices())
        info["data_parallel_devices"] = device_count()
    return info


def to_pixels(decoded, likelihood: str) -> np.ndarray:
    """Decoder outputs as images in [0, 1]: clipped means, or sigmoid(logits) for Bernoulli."""
    decoded = np.asarray(decoded)
    if likelihood == "bernoulli":
        return 1.0 / (1.0 + np.exp(-decoded))
    return np.clip(decoded, 0.0, 1.0)


def encode(vae, x: np.ndarray, likelihood: str = "gaussian", batch_size: int = 1000):
    """Encoder means and log-variances, and reconstructions from the means as images in [0, 1]."""
    means, log_vars, _ = predict(vae.encoder, x, batch_size)
    recons = predict(vae.decoder, means, batch_size)
    return np.asarray(means), np.asarray(log_vars), to_pixels(recons, likelihood)


def evaluate_run(vae, dataset: Dataset, likelihood: str = "gaussian") -> tuple[dict, dict]:
    """The run's test metrics, and the arrays its figures are drawn from."""
    means, log_vars, recons = encode(vae, dataset.x_test, likelihood)
    n_active = metrics.active_units(means)
    std = metrics.output_std(recons)
    values = {
        "test_mse": float(np.mean(np.square(recons - dataset.x_test))),
        "test_kl": float(metrics.kl_per_dimension(means, log_vars).sum()),
        "active_units": n_active,
        "output_std": std,
        "collapsed": metrics.is_collapsed(n_active, std),
    }
    _, _, lab_recon = encode(vae, dataset.x_train[LAB_IMAGE:LAB_IMAGE + 1], likelihood)
    arrays = {"means": means, "log_vars": log_vars, "recons": recons, "lab_recon": lab_recon[0]}
    return values, arrays


def write_figures(vae, dataset: Dataset, arrays: dict, history: dict, run_dir: Path,
                  config: TrainConfig) -> None:
    label = f"KL scale {format_scale(config.kl_scale)}, {config.epochs} epoch(s)"
    plots.reconstructions(dataset.x_test[:GRID], arrays["recons"][:GRID],
                          dataset.x_train[LAB_IMAGE], arrays["lab_recon"],
                          run_dir / "reconstructions.png",
                          title=f"reconstructions from the encoder mean ({label})")
    z = np.random.default_rng(config.seed).standard_normal((SAMPLES, config.latent_dim))
    samples = to_pixels(predict(vae.decoder, z.astype(np.float32)), config.likelihood)
    plots.image_grid(samples, run_dir / "samples.png", title=f"decoded z ~ N(0, I) ({label})")
    plots.latent_scatter(arrays["means"], dataset.y_test, run_dir / "latent.png",
                         title=f"test-set encoder means, PCA ({label})")
    plots.curves(history, run_dir / "curves.png", title=label)


def progress_mode(verbose: bool) -> int:
    """Keras' live progress bar on a terminal, one line per epoch in a log file."""
    if not verbose:
        return 0
    return 1 if sys.stdout.isatty() else 2


def train(config: TrainConfig, run_dir, *, overwrite: bool = False, verbose: bool = True,
          arrays=None) -> dict:
    """Train the lab's VAE under ``config`` and write the run folder ``run_dir``.

    Args:
        config: the validated settings.
        run_dir: the output folder; must be new or empty unless ``overwrite``.
        overwrite: reuse a non-empty folder (its vaelab files are replaced).
        verbose: Keras' progress bar, the KL schedule's lines and the summary.
        arrays: ``((x_train, y_train), (x_test, y_test))`` to train on instead
            of ``config.data_dir``; images uint8 ``(n, h, w)`` or float ``(n, pixels)`` in [0, 1].

    Returns:
        The contents of ``metrics.json``.

    Raises:
        UsageError, DataError: unusable settings, data or folder (nothing written).
        NonFiniteLoss: the loss became NaN/inf; the last good checkpoint is kept.
    """
    run_dir = Path(run_dir)
    check_run_dir(run_dir, overwrite)
    dataset = load_dataset(config, arrays)

    distribution_scope(config)  # refuse --distribute where it cannot work, before writing
    if config.distribute:
        check_divisible(config, len(dataset.x_train), len(dataset.x_test),
                        validation_batch_size(config))
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.json").unlink(missing_ok=True)  # the run is incomplete until the end
    shutil.rmtree(run_dir / CHECKPOINT, ignore_errors=True)
    with distribution_scope(config):
        runs.write_json(run_dir / "config.json",
                        {**config.to_dict(), "environment": environment()})
        return _fit_and_finish(config, run_dir, new_vae(config, dataset.input_dim), dataset, {},
                               0, verbose)


def new_vae(config: TrainConfig, input_dim: int):
    """A freshly initialised, compiled VAE; the weights depend on ``config.seed`` only."""
    import keras

    from vaelab.models import build_vae, compile_vae

    keras.utils.set_random_seed(config.seed)
    vae = build_vae(input_dim, config.hidden_dim, config.latent_dim, config.kl_scale,
                    seed=config.seed)
    return compile_vae(vae, config.learning_rate, config.likelihood)


def read_run_config(run_dir) -> TrainConfig:
    """The config a run folder was made with; ``UsageError`` if it is not a run folder."""
    path = Path(run_dir) / "config.json"
    try:
        return TrainConfig.from_dict(runs.read_json(path))
    except FileNotFoundError:
        raise UsageError(f"{run_dir} is not a vaelab run folder (no config.json)") from None
    except (OSError, ValueError, TypeError) as exc:
        raise UsageError(f"{run_dir} is not a usable run folder ({path.name}: {exc})") from None


def resume(run_dir, *, overrides: dict | None = None, verbose: bool = True, arrays=None) -> dict:
    """Continue an interrupted run from its last checkpoint (or from scratch if it has none).

    ``overrides`` are settings the user gave again; each must equal the saved
    one. The resumed run ends with the same weights as an uninterrupted one.
    """
    run_dir = Path(run_dir)
    config = read_run_config(run_dir)
    for key, value in (overrides or {}).items():
        if getattr(config, key) != getattr(dataclasses.replace(config, **{key: value}), key):
            raise UsageError(f"--resume {run_dir}: {key.replace('_', '-')}={value!r} differs from "
                             f"the run's {getattr(config, key)!r}")
    if runs.is_complete(run_dir):
        raise UsageError(f"--resume {run_dir}: the run is already complete")
    dataset = load_dataset(config, arrays)
    with distribution_scope(config):
        return _resume_from_checkpoint(config, run_dir, dataset, verbose)


def _resume_from_checkpoint(config: TrainConfig, run_dir: Path, dataset: Dataset, verbose: bool):
    import keras

    from vaelab.callbacks import restore_seed_states
    from vaelab.models import VAE

    state_path = run_dir / CHECKPOINT / "state.json"
    if not state_path.exists():  # killed before its first epoch ended
        return _fit_and_finish(config, run_dir, new_vae(config, dataset.input_dim), dataset, {},
                               0, verbose)
    state = runs.read_json(state_path)
    model = keras.models.load_model(run_dir / CHECKPOINT / state["model"], safe_mode=True)
    if model.input_shape[-1] != dataset.input_dim:
        raise UsageError(f"the model expects {model.input_shape[-1]} pixels per image, the data "
                         f"has {dataset.input_dim}")
    restore_seed_states(model, state["seed_states"])
    return _fit_and_finish(config, run_dir, VAE.from_model(model), dataset, state["history"],
                           state["epochs_done"], verbose)


def fit_vae(vae, x_fit: np.ndarray, dataset: Dataset, config: TrainConfig, callbacks: list,
            initial_epoch: int = 0, verbose: bool = False):
    """The one ``fit`` call every training run makes (benchmarks time this same path),
    with :func:`steps_per_execution` training steps per compiled call."""
    vae.model.steps_per_execution = steps_per_execution(len(x_fit), config)
    return vae.model.fit(x_fit, epochs=config.epochs, initial_epoch=initial_epoch,  # targets = x
                         batch_size=config.batch_size, shuffle=True,
                         validation_data=(dataset.x_test,),
                         validation_batch_size=validation_batch_size(config),
                         callbacks=callbacks, verbose=progress_mode(verbose))


def steps_per_execution(n_images: int, config: TrainConfig) -> int:
    """Training steps per compiled call: about a tenth of an epoch, at most
    ``MAX_STEPS_PER_EXECUTION``.

    Under JAX, ``VAEModel`` runs such a group as one ``lax.scan`` (see
    ``VAEModel.make_train_function``), which removes Keras' per-step Python work.
    A divisor of the number of full batches is preferred, so that no shorter
    group needs compiling. 1 (one step per call, Keras' own loop) when an epoch
    has fewer than 20 batches, with ``--distribute`` and off JAX.
    """
    import keras

    full = n_images // config.batch_size
    target = min(MAX_STEPS_PER_EXECUTION, full // 10)
    if target < 2 or config.distribute or keras.backend.backend() != "jax":
        return 1
    divisor = max(d for d in range(1, target + 1) if full % d == 0)
    return divisor if 2 * divisor >= target else target


def validation_batch_size(config: TrainConfig) -> int:
    """Validation in batches of 1 000 (a multiple of the training batch): the mean losses
    are the same, and 10 evaluation steps cost far less than 313 of 32 images."""
    return max(config.batch_size, VALIDATION_BATCH - VALIDATION_BATCH % config.batch_size)


def _fit_and_finish(config: TrainConfig, run_dir: Path, vae, dataset: Dataset, past: dict,
                    initial_epoch: int, verbose: bool) -> dict:
    """Fit from ``initial_epoch`` with checkpoints, then write the run's results."""
    from vaelab.callbacks import (Binarize, Checkpoint, CollapseMonitor, KLSchedule, ShuffleSeed,
                                  StopOnNonFinite)

    schedule = config.kl_schedule()
    guard = StopOnNonFinite()
    checkpoint = Checkpoint(run_dir / CHECKPOINT, past)
    callbacks = [ShuffleSeed(config.seed)]
    if schedule is not None:
        callbacks.append(KLSchedule(schedule, verbose=verbose))
    callbacks += [CollapseMonitor(dataset.x_test[:HELDOUT], verbose=verbose), guard, checkpoint]
    x_fit = dataset.x_train
    if config.likelihood == "bernoulli":  # a fresh binarization every epoch
        x_fit = np.empty_like(dataset.x_train)
        callbacks.insert(0, Binarize(dataset.x_train, x_fit, config.seed))
    started = time.perf_counter()
    fit_vae(vae, x_fit, dataset, config, callbacks, initial_epoch, verbose)
    seconds = time.perf_counter() - started
    if guard.where is not None:
        epoch, batch = guard.where
        kept = len(checkpoint.history.get("loss", []))
        where = (f"the last good checkpoint (epoch {kept}) is kept in {run_dir / CHECKPOINT}"
                 if kept else "no epoch had completed, so there is no checkpoint")
        raise NonFiniteLoss(f"non-finite loss at epoch {epoch}, batch {batch}: training stopped; "
                            f"{where}")
    history = checkpoint.history
    if "kl_weight" not in history:
        history["kl_weight"] = [1.0] * len(history["loss"])

    values, figure_arrays = evaluate_run(vae, dataset, config.likelihood)
    values.update(epochs=config.epochs, train_seconds=round(seconds, 3))
    if initial_epoch:
        values["resumed_at_epoch"] = initial_epoch + 1
    with runs.atomic_path(run_dir / "model.keras") as tmp:
        vae.model.save(tmp)
    runs.write_npz(run_dir / "lab_image.npz", original=dataset.x_train[LAB_IMAGE],
                   reconstruction=figure_arrays["lab_recon"])
    ordered = ["loss", "reconstruction_loss", "kl_loss", "kl_weight", "active_units", "heldout_kl"]
    ordered += sorted(k for k in history if k not in ordered)
    runs.write_history_csv(run_dir / "history.csv", {k: history[k] for k in ordered})
    write_figures(vae, dataset, figure_arrays, runs.read_history_csv(run_dir / "history.csv"),
                  run_dir, config)
    explorer.write_explorer(run_dir, vae=vae, dataset=dataset,
                            encoded=(figure_arrays["means"], figure_arrays["log_vars"]))
    values["complete"] = True
    runs.write_json(run_dir / "metrics.json", values)
    shutil.rmtree(run_dir / CHECKPOINT, ignore_errors=True)  # model.keras supersedes it
    if verbose:
        print(summary_line(run_dir, values))
    return values


def summary_line(run_dir, values: dict) -> str:
    verdict = "COLLAPSED" if values["collapsed"] else "not collapsed"
    return (f"{run_dir}: {values['epochs']} epoch(s) in {values['train_seconds']:.1f} s; "
            f"test MSE {values['test_mse']:.4f}, KL {values['test_kl']:.2f} nats, "
            f"{values['active_units']} active units, output std {values['output_std']:.3f}: {verdict}")
