"""Where a batch runs: Keras' data-parallel distribution over the local devices.

``distribution_scope(config)`` is a ``keras.distribution.DataParallel`` scope when
``config.distribute`` (JAX only); ``predict`` pads its input so every sharded batch splits
evenly over the devices, and in a job of several processes predicts with this process's copy.
"""

from __future__ import annotations

import contextlib

import keras
import numpy as np

from vaelab.core.config import TrainConfig, UsageError
from vaelab.core.models.vae import device_count
from vaelab.core.models.vae import predict as padded_predict
from vaelab.dist import cluster


def predict(model, x, batch_size: int = 1000):
    """``model.predict`` on rows padded to a multiple of the device count
    (:func:`vaelab.core.models.vae.predict`); in a multi-process job whose model spans the
    processes, on this process's copy of the model (``cluster.host_copy``)."""
    if cluster.process_count() > 1 and device_count() > 1:  # a model spanning processes
        with cluster.without_distribution():
            return padded_predict(cluster.host_copy(model), x, batch_size)
    return padded_predict(model, x, batch_size)


def distribution_scope(config: TrainConfig):
    """Keras' ``DataParallel`` over all local devices when ``config.distribute``, else nothing.

    The batch size stays the global batch: each of the N devices gets 1/N of it.
    """
    if not config.distribute:
        return contextlib.nullcontext()
    if keras.backend.backend() != "jax":
        raise UsageError(f"--distribute needs the JAX backend (Keras' distribution API); "
                         f"this is KERAS_BACKEND={keras.backend.backend()}")
    distribution = keras.distribution.DataParallel()
    n = int(np.size(distribution.device_mesh.devices))
    if config.batch_size % n:
        raise UsageError(f"--distribute over {n} devices needs a batch size divisible by {n}, "
                         f"received {config.batch_size}")
    if cluster.process_count() > 1:  # vaelab feeds each process its rows itself (fit.py)
        distribution.auto_shard_dataset = False
    return distribution.scope()


def check_divisible(config: TrainConfig, n_train: int, n_test: int,
                    validation_batch: int) -> None:
    """Every sharded batch, the last partial ones too, must split evenly over the devices."""
    n = int(np.size(keras.distribution.DataParallel().device_mesh.devices))
    for name, count, batch in (("training", n_train, config.batch_size),
                               ("test", n_test, validation_batch)):
        if (count % batch) % n:
            raise UsageError(f"--distribute over {n} devices: the last batch of the {count} {name} "
                             f"images has {count % batch}, not divisible by {n}")
