"""Train one VAE into a run folder: ``train(config, run_dir)`` and ``resume(run_dir)``.

The recipe: check the folder, load the data, write ``config.json``, build the model,
fit with per-epoch checkpoints, then write the results (``model.keras``,
``history.csv``, figures, the explorer) and ``metrics.json`` last, which marks the
run complete. The run folder itself is ``vaelab.runs``'s; the checkpoints are
``vaelab.checkpoint``'s.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path

import keras
import numpy as np

from vaelab import checkpoint, cluster, evaluation, explorer, interrupts, plots, preflight, runs
from vaelab.callbacks import Binarize, CollapseMonitor, KLSchedule, ShuffleSeed, StopOnNonFinite
from vaelab.config import JobFailed, NonFiniteLoss, TrainConfig, UsageError
from vaelab.data import Dataset
from vaelab.devices import check_divisible, distribution_scope
from vaelab.fit import fit_settings, fit_vae, validation_batch_size
from vaelab.models import VAE, build_vae, compile_vae
from vaelab.preflight import as_dataset, run_dataset
from vaelab.schedules import burda_learning_rate

HISTORY_COLUMNS = ["loss", "reconstruction_loss", "kl_loss", "kl_weight", "active_units",
                   "heldout_kl"]


def train(config: TrainConfig, run_dir, *, overwrite: bool = False, verbose: bool = True,
          arrays=None) -> dict:
    """Train a VAE under ``config`` and write the run folder ``run_dir``.

    Args:
        config: the validated settings.
        run_dir: the output folder; must be new or empty unless ``overwrite``.
        overwrite: reuse a non-empty folder (its vaelab files are replaced).
        verbose: Keras' progress bar, the KL schedule's lines and the summary.
        arrays: a :class:`~vaelab.data.Dataset`, or ``((x_train, y_train), (x_test, y_test))``
            to train on instead of ``config.data_dir``; images uint8 ``(n, h, w)`` or float
            ``(n, pixels)`` in [0, 1]. ``config.json`` records their content fingerprint.

    Returns:
        The contents of ``metrics.json``.

    Raises:
        UsageError, DataError: unusable settings, data or folder (nothing written).
        NonFiniteLoss: the loss became NaN/inf; the last good checkpoint is kept.
    """
    run_dir = Path(run_dir)
    config, dataset = prepare(config, run_dir, overwrite, arrays)
    cluster.barrier("vaelab: settings, data and run folder checked")  # then process 0 writes
    if not cluster.is_writer():  # process 0 of a job writes the run folder; this one trains
        with distribution_scope(config):
            return _fit_and_finish(config, run_dir, new_vae(config, dataset.input_dim), dataset,
                                   {}, 0, False)
    if verbose:
        preflight.warn(config, dataset)
    runs.make_run_dir(run_dir)
    with runs.locked(run_dir), distribution_scope(config):
        runs.check_run_dir(run_dir, overwrite)  # again, now that no one else can write
        runs.clear(run_dir)  # the run is incomplete until metrics.json comes back
        runs.write_config(run_dir, config, dataset.identity,
                          fit_settings(config, len(dataset.x_train)))
        return _fit_and_finish(config, run_dir, new_vae(config, dataset.input_dim), dataset, {},
                               0, verbose)


def prepare(config: TrainConfig, run_dir: Path, overwrite: bool, arrays=None
            ) -> tuple[TrainConfig, Dataset]:
    """Check the folder, the settings and the data before anything is written: the
    config as the run records it (KL scale, classes and data folder filled in) and its data."""
    runs.check_run_dir(run_dir, overwrite)
    dataset = run_dataset(config, as_dataset(arrays))
    if config.data_dir is not None:  # recorded as an absolute path
        config = dataclasses.replace(config, data_dir=str(Path(config.data_dir).absolute()))
    config = config.for_data(dataset.input_dim)
    if config.conditional:
        config = dataclasses.replace(config, classes=dataset.classes)
    preflight.check_memory(config, dataset.input_dim)
    distribution_scope(config)  # refuse --distribute where it cannot work, before writing
    if config.distribute:
        check_divisible(config, len(dataset.x_train), len(dataset.x_test),
                        validation_batch_size(config))
    return config, dataset


def new_vae(config: TrainConfig, input_dim: int) -> VAE:
    """A freshly initialised, compiled VAE; the weights depend on ``config.seed`` only."""
    keras.utils.set_random_seed(config.seed)
    config = config.for_data(input_dim)
    vae = build_vae(input_dim, config.hidden, config.latent_dim,
                    config.effective_kl_scale(input_dim), seed=config.seed,
                    likelihood=config.likelihood, activation=config.activation,
                    model=config.model, classes=config.classes or 0,
                    free_bits=config.free_bits, objective=config.objective)
    return compile_vae(vae, config.learning_rate, config.adam_epsilon)


def resume(run_dir, *, overrides: dict | None = None, verbose: bool = True, arrays=None) -> dict:
    """Continue an interrupted run from its last checkpoint (or from scratch if it has none).

    ``overrides`` are settings the user gave again; each must equal the saved
    one. The resumed run ends with the same weights as an uninterrupted one.
    """
    run_dir = Path(run_dir)
    runs.read_run_config(run_dir)  # a run folder, before the lock file is made in it
    if not cluster.is_writer():  # another process of a job: reads the folder, never writes
        return _resume_run(run_dir, overrides, False, arrays)
    with runs.locked(run_dir):
        return _resume_run(run_dir, overrides, verbose, arrays)


def _resume_run(run_dir: Path, overrides: dict | None, verbose: bool, arrays) -> dict:
    config = runs.read_run_config(run_dir)
    for key, value in (overrides or {}).items():
        if getattr(config, key) != getattr(dataclasses.replace(config, **{key: value}), key):
            raise UsageError(f"--resume {run_dir}: {key.replace('_', '-')}={value!r} differs from "
                             f"the run's {getattr(config, key)!r}")
    if runs.is_complete(run_dir):
        raise UsageError(f"--resume {run_dir}: the run is already complete")
    if cluster.is_writer():
        runs.remove_temporaries(run_dir)
    data = as_dataset(arrays)
    if data is None:
        data = runs.load_run_data(run_dir, config)
    else:
        runs.check_run_data(run_dir, data)
    dataset = run_dataset(config, data)
    with distribution_scope(config):
        state = checkpoint.read_state(run_dir)
        if state is None:  # killed before its first epoch ended
            return _fit_and_finish(config, run_dir, new_vae(config, dataset.input_dim), dataset,
                                   {}, 0, verbose)
        # Loading builds the model with initial values first: the same seed makes them the
        # same in every process of a job (Keras checks that), before the saved ones replace them.
        keras.utils.set_random_seed(config.seed)
        vae = VAE.from_model(checkpoint.load_checkpoint_model(run_dir, state))
        if vae.input_dim != dataset.input_dim:
            raise UsageError(f"the model expects {vae.input_dim} pixels per image, "
                             f"the data has {dataset.input_dim}")
        checkpoint.restore_seed_states(vae.model, state["seed_states"])
        return _fit_and_finish(config, run_dir, vae, dataset, state["history"],
                               state["epochs_done"], verbose)


def learning_rate_callbacks(config: TrainConfig) -> list:
    """The callback that sets ``config.lr_schedule``'s learning rate each epoch, if any."""
    if config.lr_schedule != "burda":
        return []
    return [keras.callbacks.LearningRateScheduler(
        lambda epoch, _: burda_learning_rate(epoch, config.learning_rate))]


def heldout_inputs(config: TrainConfig, vae: VAE, dataset: Dataset):
    """The fixed test batch the collapse monitor watches (with labels for a conditional VAE)."""
    heldout = slice(0, config.heldout_size)
    return vae.with_labels(dataset.x_test[heldout], dataset.y_test[heldout])


def _callbacks(config: TrainConfig, run_dir: Path, vae: VAE, dataset: Dataset, past: dict,
               verbose: bool):
    """``(callbacks, x_fit, guard, checkpointer)`` for one fit of this run; the checkpointer
    and the collapse monitor only where this process writes the run folder."""
    guard = StopOnNonFinite()
    writer = cluster.is_writer()
    saver = checkpoint.Checkpoint(run_dir / checkpoint.FOLDER, past) if writer else None
    callbacks = [interrupts.StopOnSignal(), ShuffleSeed(config.seed)]
    schedule = config.kl_schedule()
    if schedule is not None:
        callbacks.append(KLSchedule(schedule, verbose=verbose))
    callbacks += learning_rate_callbacks(config)
    if writer:
        callbacks.append(CollapseMonitor(heldout_inputs(config, vae, dataset), verbose=verbose))
    callbacks += [guard, saver] if writer else [guard]
    x_fit = dataset.x_train
    if config.model_likelihood.binarized:  # a fresh binarization every epoch
        x_fit = np.empty_like(dataset.x_train)
        callbacks.insert(0, Binarize(dataset.x_train, x_fit, config.seed))
    return callbacks, vae.with_labels(x_fit, dataset.y_train), guard, saver


def _fit_and_finish(config: TrainConfig, run_dir: Path, vae: VAE, dataset: Dataset, past: dict,
                    initial_epoch: int, verbose: bool) -> dict:
    """Fit from ``initial_epoch`` with checkpoints, then write the run's results.

    A SIGINT/SIGTERM stops the fit at the next step (group) end and raises
    :class:`~vaelab.interrupts.Interrupted` naming the last checkpoint.
    """
    callbacks, x_fit, guard, saver = _callbacks(config, run_dir, vae, dataset, past, verbose)
    started = time.perf_counter()
    try:
        with interrupts.deferred():
            fit_vae(vae, x_fit, dataset, config, callbacks, initial_epoch, verbose)
    except interrupts.Interrupted as exc:
        exc.checkpoint = _last_checkpoint(saver)
        raise
    except Exception as exc:
        if not cluster.lost_contact(exc):
            raise
        if interrupts.pending() is not None:  # stopped with the others: not a failure
            raise interrupts.Interrupted(interrupts.pending(), _last_checkpoint(saver)) from None
        raise JobFailed(f"{cluster.lost_contact_message(exc)}; "
                        f"{_last_checkpoint(saver) or 'process 0 keeps the last checkpoint'}"
                        ) from None
    seconds = time.perf_counter() - started
    if guard.where is not None:
        raise NonFiniteLoss(non_finite_message(guard, saver, run_dir))
    if cluster.process_count() > 1:
        line = (f"process {cluster.process_index()} of {cluster.process_count()}: "
                f"{config.epochs} epoch(s) trained; weights SHA-256 "
                f"{cluster.weights_digest(vae.model)}")
        if saver is None:  # the others' part ends here; process 0 writes the results
            print(line, flush=True)
            return {"process": cluster.process_index(), "epochs": config.epochs}
        if verbose:
            print(line, flush=True)
        with cluster.without_distribution():  # the results from process 0's own copy
            host = VAE.from_model(cluster.host_copy(vae.model))
            return finish(config, run_dir, host, dataset, saver.history, seconds,
                           initial_epoch, verbose)
    return finish(config, run_dir, vae, dataset, saver.history, seconds, initial_epoch, verbose)


def non_finite_message(guard: StopOnNonFinite, saver, run_dir: Path) -> str:
    """One line: where the loss stopped being finite, and which checkpoint is kept."""
    epoch, batch = guard.where
    kept = len(saver.history.get("loss", [])) if saver is not None else 0
    where = (f"the last good checkpoint (epoch {kept}) is kept in {run_dir / checkpoint.FOLDER}"
             if kept else "no epoch had completed, so there is no checkpoint")
    if saver is None:
        where = "process 0 keeps the last good checkpoint"
    return f"non-finite loss at epoch {epoch}, batch {batch}: training stopped; {where}"


def finish(config: TrainConfig, run_dir: Path, vae: VAE, dataset: Dataset, history: dict,
           seconds: float, initial_epoch: int, verbose: bool, together: int = 1) -> dict:
    """Evaluate the trained model and write the run's results, ``metrics.json`` last.

    ``together``: the runs of the population it trained in (``seconds`` is that fit's
    wall time, shared by them); recorded as ``trained_together`` when above 1.
    """
    if "kl_weight" not in history:
        history["kl_weight"] = [1.0] * len(history["loss"])

    values, arrays = evaluation.test_metrics(vae, dataset, config.lab_image)
    values.update(epochs=config.epochs, train_seconds=round(seconds, 3))
    if together > 1:
        values["trained_together"] = together
    if initial_epoch:
        values["resumed_at_epoch"] = initial_epoch + 1
    runs.save_model(run_dir, vae.model)
    runs.write_npz(run_dir / "lab_image.npz", original=dataset.x_train[config.lab_image],
                   reconstruction=arrays["lab_recon"])
    ordered = HISTORY_COLUMNS + sorted(k for k in history if k not in HISTORY_COLUMNS)
    runs.write_history_csv(run_dir / "history.csv", {k: history[k] for k in ordered if k in history})
    plots.write_run_figures(run_dir, vae, dataset, arrays,
                            runs.read_history_csv(run_dir / "history.csv"), config)
    explorer.write_explorer(run_dir, vae=vae, dataset=dataset,
                            encoded=(arrays["means"], arrays["log_vars"]))
    values["complete"] = True
    runs.write_json(run_dir / "metrics.json", values)
    shutil.rmtree(run_dir / checkpoint.FOLDER, ignore_errors=True)  # model.keras supersedes it
    if verbose:
        print(summary_line(run_dir, values))
    return values


def _last_checkpoint(saver) -> str | None:
    if saver is None:
        return None
    done = len(saver.history.get("loss", []))
    return f"last checkpoint: epoch {done}" if done else "no checkpoint yet"


def summary_line(run_dir, values: dict) -> str:
    verdict = "COLLAPSED" if values["collapsed"] else "not collapsed"
    return (f"{run_dir}: {values['epochs']} epoch(s) in {values['train_seconds']:.1f} s; "
            f"test MSE {values['test_mse']:.4f}, KL {values['test_kl']:.2f} nats, "
            f"{values['active_units']} active units, output std {values['output_std']:.3f}: {verdict}")
