"""Train runs into run folders: ``train(config, run_dir)``, ``train_group`` and ``resume``.

One recipe for a run alone and for a population of compatible runs
(:mod:`vaelab.training.population`) alike: check every folder, setting and the data before
anything is written; write each ``config.json``; build each model; fit them in one call
(:class:`vaelab.training.fit.Fit`, per-epoch checkpoints); then write each run's results
(``model.keras``, ``history.csv``, figures, the explorer) and ``metrics.json`` last, which
marks the run complete (:mod:`vaelab.training.results`). The run folder itself is
``vaelab.store.runs``'s; the checkpoints are ``vaelab.training.checkpoint``'s.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from pathlib import Path

import keras
import numpy as np

from vaelab import signals
from vaelab.core import keras_seam
from vaelab.core.config import JobFailed, NonFiniteLoss, TrainConfig, UsageError
from vaelab.core.models import VAE, compile_vae
from vaelab.core.models.described import build_described, check_described
from vaelab.data import Dataset
from vaelab.dist import cluster
from vaelab.dist.devices import check_divisible, distribution_scope
from vaelab.store import runs
from vaelab.training import checkpoint, preflight, results
from vaelab.training.fit import Fit, Member, fit_settings, validation_batch_size
from vaelab.training.preflight import as_dataset, run_dataset

# What each member of a population owns; every other setting must be the same.
MEMBER_FIELDS = ("seed", "kl_scale", "beta", "free_bits", "anneal", "schedule", "heldout_size",
                 "lab_image")


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
    return train_group([config], [run_dir], overwrite=overwrite, verbose=verbose,
                       arrays=arrays)[0]


def train_group(configs: list[TrainConfig], run_dirs: list, *, overwrite: bool = False,
                verbose: bool = True, arrays=None) -> list[dict]:
    """Train runs in one fit, each into its own folder: one run alone, or several
    compatible ones (:data:`MEMBER_FIELDS` aside, the same settings) as one population.

    Every folder, setting and the data are checked, then every folder locked, before any is
    written. Returns each run's ``metrics.json`` contents. Raises ``NonFiniteLoss`` (after
    writing the others) when a run's loss stopped being finite; otherwise as :func:`train`.
    """
    run_dirs = [Path(d) for d in run_dirs]
    if len(configs) > 1:
        if why_alone() is not None:
            raise UsageError(why_alone())
        check_compatible(configs)
        if arrays is None:  # read once, shared by every member (each cuts its own sizes)
            arrays = Dataset.load(configs[0].data_dir, configs[0].dataset)
    check_folders(run_dirs, overwrite)
    prepared, dataset = [], None
    for config, run_dir in zip(configs, run_dirs, strict=True):
        config, data = prepare(config, run_dir, overwrite, arrays)
        if dataset is not None and data.identity != dataset.identity:
            raise UsageError("runs trained together must train on the same data")
        dataset = dataset or data
        prepared.append(config)
    if len(prepared) > 1:
        preflight.check_memory(prepared[0], dataset.input_dim, copies=len(prepared),
                               rows=batch_rows(prepared[0], dataset),
                               data_bytes=len(prepared) * dataset.x_train.nbytes)
    cluster.barrier("vaelab: settings, data and run folder checked")  # then process 0 writes
    if not cluster.is_writer():  # process 0 of a job writes the run folder; this one trains
        with distribution_scope(prepared[0]):
            vae = new_vae(prepared[0], dataset.input_dim, dataset.x_train)
            return fit_and_finish([Member(prepared[0], vae, run_dirs[0])], dataset, 0, False)
    if verbose:
        for config in prepared:
            preflight.warn(config, dataset)
    with contextlib.ExitStack() as stack:
        for run_dir in run_dirs:  # every folder locked and checked before any is written
            runs.make_run_dir(run_dir)
            stack.enter_context(runs.locked(run_dir))
            runs.check_run_dir(run_dir, overwrite)  # again, now that no one else can write
        stack.enter_context(distribution_scope(prepared[0]))
        for i, (config, run_dir) in enumerate(zip(prepared, run_dirs)):
            runs.clear(run_dir)  # the run is incomplete until metrics.json comes back
            settings = fit_settings(config, len(dataset.x_train))
            if len(prepared) > 1:
                settings["population"] = {"members": len(prepared), "index": i,
                                          "runs": [str(d) for d in run_dirs]}
            runs.write_config(run_dir, config, dataset.identity, settings)
        try:
            members = [Member(config, new_vae(config, dataset.input_dim, dataset.x_train), run_dir)
                       for config, run_dir in zip(prepared, run_dirs)]
            return fit_and_finish(members, dataset, 0, verbose)
        except NonFiniteLoss:
            raise  # the folder is the evidence (docs/errors.md), kept
        except Exception:
            for run_dir in run_dirs:  # failed before a first checkpoint: nothing worth keeping
                if checkpoint.read_state(run_dir) is None and not runs.is_complete(run_dir):
                    runs.clear(run_dir)  # so that the same command can run again
            raise


def shared_settings(config: TrainConfig) -> dict:
    """The settings every member of a population has in common."""
    return {k: v for k, v in config.to_dict().items() if k not in MEMBER_FIELDS}


def check_compatible(configs: list[TrainConfig]) -> None:
    """``UsageError`` naming the first setting in which two runs trained together differ."""
    first = shared_settings(configs[0])
    for config in configs[1:]:
        for key, value in shared_settings(config).items():
            if value != first[key]:
                raise UsageError(f"runs trained together must share {key}: "
                                 f"{first[key]!r} and {value!r}")


def compatible_key(config: TrainConfig) -> str:
    """Equal for runs that can train together (a run with ``distribute`` trains alone)."""
    return json.dumps(shared_settings(config), sort_keys=True, default=str)


def why_alone() -> str | None:
    """Why runs cannot train together here, or ``None`` when they can."""
    if keras.backend.backend() != "jax":
        return f"population training needs the JAX backend, this is {keras.backend.backend()}"
    if cluster.process_count() > 1:
        return "population training runs in one process, this is a job of several"
    return None


def check_folders(run_dirs: list[Path], overwrite: bool) -> None:
    """Every run folder usable, and no two runs the same folder, before any run starts."""
    seen: dict[Path, Path] = {}
    for run_dir in run_dirs:
        key = run_dir.resolve()
        if key in seen:
            raise UsageError(f"two runs would write the same folder: {seen[key]} and {run_dir}")
        seen[key] = run_dir
        runs.check_run_dir(run_dir, overwrite)


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
    preflight.check_memory(config, dataset.input_dim, rows=batch_rows(config, dataset))
    distribution_scope(config)  # refuse --distribute where it cannot work, before writing
    if config.distribute:
        check_divisible(config, len(dataset.x_train), len(dataset.x_test),
                        validation_batch_size(config))
    return config, dataset


def batch_rows(config: TrainConfig, dataset: Dataset) -> int:
    """The most images one step takes: a training batch or a validation batch."""
    return max(min(config.batch_size, len(dataset.x_train)),
               min(validation_batch_size(config), len(dataset.x_test)))


def new_vae(config: TrainConfig, input_dim: int, train_images=None) -> VAE:
    """A freshly initialised, compiled VAE; the weights depend on ``config.seed`` only, and
    with ``--output-bias data`` the output bias on ``train_images``' mean pixel."""
    vae = build_described(config, input_dim)
    if config.output_bias == "data":
        if train_images is None:
            raise ValueError("--output-bias data needs the training images")
        vae.start_output_at(np.mean(train_images, axis=0, dtype=np.float64))
    return compile_vae(vae, config.learning_rate, config.adam_epsilon)


def resume(run_dir, *, overrides: dict | None = None, verbose: bool = True, arrays=None) -> dict:
    """Continue an interrupted run from its last checkpoint (or from scratch if it has none).

    ``overrides`` are settings the user gave again; each must equal the saved
    one. The resumed run ends with the same weights as an uninterrupted one.
    """
    run_dir = Path(run_dir)
    writer = cluster.is_writer()  # another process of a job reads the folder, never writes
    with runs.open_run(run_dir, complete=None, lock=writer) as config:
        return _resume_run(run_dir, config, overrides, verbose and writer, arrays)


def _resume_run(run_dir: Path, config: TrainConfig, overrides: dict | None, verbose: bool,
                arrays) -> dict:
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
            member = Member(config, new_vae(config, dataset.input_dim, dataset.x_train), run_dir)
            return fit_and_finish([member], dataset, 0, verbose)[0]
        # Loading builds the model with initial values first: the same seed makes them the
        # same in every process of a job (Keras checks that), before the saved ones replace them.
        with keras_seam.seeded(config.seed):
            vae = VAE.from_model(checkpoint.load_checkpoint_model(run_dir, state))
        if vae.input_dim != dataset.input_dim:
            raise UsageError(f"the model expects {vae.input_dim} pixels per image, "
                             f"the data has {dataset.input_dim}")
        check_described(vae, config, run_dir / checkpoint.FOLDER / state["model"],
                        run_dir / "config.json")
        checkpoint.restore_seed_states(vae.model, state["seed_states"])
        member = Member(config, vae, run_dir, state["history"])
        return fit_and_finish([member], dataset, state["epochs_done"], verbose)[0]


def fit_and_finish(members: list[Member], dataset: Dataset, initial_epoch: int,
                   verbose: bool) -> list[dict]:
    """Fit ``members`` from ``initial_epoch`` with checkpoints, then write each run's results.

    A SIGINT/SIGTERM stops the fit at the next step (group) end and raises
    :class:`~vaelab.signals.Interrupted` naming the last checkpoints.
    """
    fit = Fit(members, dataset, verbose)
    started = time.perf_counter()
    try:
        with signals.deferred():
            fit.run(initial_epoch)
    except signals.Interrupted as exc:
        exc.checkpoint = fit.last_checkpoints()
        raise
    except Exception as exc:
        if not cluster.lost_contact(exc):
            raise
        if signals.pending() is not None:  # stopped with the others: not a failure
            raise signals.Interrupted(signals.pending(), fit.last_checkpoints()) from None
        raise JobFailed(f"{cluster.lost_contact_message(exc)}; "
                        f"{fit.last_checkpoints() or 'process 0 keeps the last checkpoint'}"
                        ) from None
    seconds = time.perf_counter() - started
    written, failures = [], []
    for i, member in enumerate(members):
        signals.check()  # a Ctrl-C whose raise was lost: no more results written
        guard, saver = fit.guards[i], fit.savers[i]
        if guard.where is not None:
            why = results.non_finite_message(guard, saver, member.run_dir)
            failures.append(f"{member.run_dir}: {why}" if fit.together else why)
            continue
        fit.export_optimizer_state(i)  # model.keras holds the optimizer, as alone
        written.append(results.write_member(member, saver, dataset, seconds, initial_epoch,
                                            verbose, len(members)))
    if failures:
        raise NonFiniteLoss("; ".join(failures))
    return written
