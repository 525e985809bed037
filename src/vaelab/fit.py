"""How a run calls Keras' ``fit``: steps per compiled call, validation batches, progress.

These settings change the numbers only in the last bits (summation order); they are
recorded under ``fit`` in ``config.json``.
"""

from __future__ import annotations

import sys

import keras
import numpy as np

from vaelab import cluster
from vaelab.callbacks import ShardedShuffle
from vaelab.config import TrainConfig

VALIDATION_BATCH = 1000        # images per validation step
MAX_STEPS_PER_EXECUTION = 128  # training steps per compiled call (JAX scan), at most
MAX_STEPS_CONV = 8             # the conv model's groups are unrolled: short, to compile fast


def progress_mode(verbose: bool) -> int:
    """Keras' live progress bar on a terminal, one line per epoch in a log file."""
    if not verbose:
        return 0
    return 1 if sys.stdout.isatty() else 2


def fit_settings(config: TrainConfig, n_train: int) -> dict:
    """How ``fit`` runs: settings that are not the user's but change the numbers slightly."""
    return {"steps_per_execution": steps_per_execution(n_train, config),
            "validation_batch_size": validation_batch_size(config)}


def fit_vae(vae, x_fit, dataset, config: TrainConfig, callbacks: list,
            initial_epoch: int = 0, verbose: bool = False):
    """The one ``fit`` call every training run makes (benchmarks time this same path),
    with :func:`steps_per_execution` training steps per compiled call."""
    images = x_fit[0] if isinstance(x_fit, list) else x_fit  # [images, one-hot labels]
    vae.model.steps_per_execution = steps_per_execution(len(images), config)
    x_test = vae.with_labels(dataset.x_test, dataset.y_test)
    batch, test_batch, shuffle = config.batch_size, validation_batch_size(config), True
    count = cluster.process_count()
    if count > 1:  # each process feeds its rows of every global batch (Keras joins them)
        x_fit, x_test, shuffler = _process_shards(x_fit, x_test, config, count)
        callbacks = [*callbacks, shuffler]  # last: after Binarize has refreshed x_fit
        batch, test_batch, shuffle = batch // count, test_batch // count, False
    return vae.model.fit(x_fit, epochs=config.epochs, initial_epoch=initial_epoch,  # targets = x
                         batch_size=batch, shuffle=shuffle, validation_data=(x_test,),
                         validation_batch_size=test_batch, callbacks=callbacks,
                         verbose=progress_mode(verbose))


def _process_shards(x_fit, x_test, config: TrainConfig, count: int):
    """This process's training arrays (refilled each epoch by the returned
    ``ShardedShuffle``) and its fixed rows of the test set."""
    index = cluster.process_index()
    fit_sources = x_fit if isinstance(x_fit, list) else [x_fit]
    targets = [np.empty((len(a) // count, *a.shape[1:]), a.dtype) for a in fit_sources]
    shuffler = ShardedShuffle(fit_sources, targets, config.seed, config.batch_size, count, index)
    test_sources = x_test if isinstance(x_test, list) else [x_test]
    rows = cluster.local_rows(len(test_sources[0]), validation_batch_size(config), count, index)
    tests = [np.take(a, rows, axis=0) for a in test_sources]
    if not isinstance(x_fit, list):
        return targets[0], tests[0], shuffler
    return targets, tests, shuffler


def steps_per_execution(n_images: int, config: TrainConfig) -> int:
    """Training steps per compiled call: about a tenth of an epoch, at most
    ``MAX_STEPS_PER_EXECUTION``.

    Under JAX, ``VAEModel`` runs such a group as one ``lax.scan`` (see
    ``VAEModel.make_train_function``), which removes Keras' per-step Python work.
    A divisor of the number of full batches is preferred, so that no shorter
    group needs compiling. 1 (one step per call, Keras' own loop) when an epoch
    has fewer than 20 batches, with ``--distribute`` and off JAX.
    """
    full = n_images // config.batch_size
    cap = MAX_STEPS_CONV if config.model == "conv" else MAX_STEPS_PER_EXECUTION
    target = min(cap, full // 10)
    if target < 2 or config.distribute or keras.backend.backend() != "jax":
        return 1
    divisor = max(d for d in range(1, target + 1) if full % d == 0)
    return divisor if 2 * divisor >= target else target


def validation_batch_size(config: TrainConfig) -> int:
    """Validation in batches of 1 000 (a multiple of the training batch): the mean losses
    are the same, and 10 evaluation steps cost far less than 313 of 32 images."""
    return max(config.batch_size, VALIDATION_BATCH - VALIDATION_BATCH % config.batch_size)
