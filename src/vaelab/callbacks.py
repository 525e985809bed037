"""Keras callbacks that steer and watch VAE training."""

from __future__ import annotations

import functools
import math
import sys

import keras
import numpy as np
from keras import ops

from vaelab import metrics, schedules
from vaelab.cluster import local_rows
from vaelab.devices import predict
from vaelab.layers import _check_positive_int
from vaelab.models import VAE, sampling_layers


class KLSchedule(keras.callbacks.Callback):
    """Sets the KL weight of every sampling layer from a schedule, once per epoch.

    At the start of 1-based epoch ``e`` the weight becomes ``schedule(e)``.
    The weight is reached through ``self.model`` (never a captured variable),
    so the change reaches the compiled train step; the weight applied during
    the epoch is written to ``logs["kl_weight"]`` so it shows in ``History``.

    Args:
        schedule: a function ``epoch -> weight`` (see ``vaelab.schedules``).
        verbose: print one line per epoch with the weight.
    """

    def __init__(self, schedule: schedules.Schedule, verbose: bool = True):
        super().__init__()
        self.schedule = schedule
        self.verbose = verbose
        self.weight = None

    def _set(self, weight: float) -> None:
        layers = sampling_layers(self.model)
        if not layers:
            raise ValueError(f"{type(self).__name__} needs a model with a Sampling layer; "
                             f"{self.model.name!r} has none")
        for layer in layers:
            layer.kl_weight.assign(weight)
        self.weight = float(weight)

    def _message(self, epoch: int, weight: float) -> str:
        return f"epoch {epoch}: KL weight {weight:g}"

    def on_epoch_begin(self, epoch, logs=None):
        epoch += 1  # Keras counts from 0, the schedules from 1
        weight = float(self.schedule(epoch))
        self._set(weight)
        if self.verbose:
            print(self._message(epoch, weight))

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["kl_weight"] = self.weight


class KLAnnealing(KLSchedule):
    """The lab's KL annealing: weight 0 at train start, then a linear ramp.

    At the start of 1-based epoch ``e`` the weight stays 0 while
    ``e < epoch_start``, then becomes ``min(1, (e − epoch_start) / duration_epochs)``
    (``vaelab.schedules.linear``). With the lab's (4, 8) and 20 epochs the weights
    are 0, 0, 0, 0, 0.125, 0.25, …, 0.875, 1, …, 1.

    Args:
        epoch_start: positive int, the first epoch of the ramp.
        duration_epochs: positive int, epochs from weight 0 to weight 1.
        verbose: print one line per epoch, as the lab's callback does.
    """

    def __init__(self, epoch_start: int = 4, duration_epochs: int = 8, verbose: bool = True):
        self.epoch_start = _check_positive_int("epoch_start", epoch_start)
        self.duration_epochs = _check_positive_int("duration_epochs", duration_epochs)
        super().__init__(functools.partial(schedules.linear, start=epoch_start,
                                           duration=duration_epochs), verbose)

    def on_train_begin(self, logs=None):
        self._set(0.0)  # no KL at the beginning of training

    def _message(self, epoch, weight):
        if epoch < self.epoch_start:
            return f"epoch {epoch}: KL weight {weight:g} (annealing starts at epoch {self.epoch_start})"
        return f"epoch {epoch}: KL weight {weight:g}"


class CollapseMonitor(keras.callbacks.Callback):
    """Watches a fixed held-out batch for posterior collapse at each epoch end.

    Logs ``active_units`` (latent dimensions whose encoder-mean variance over
    the batch exceeds ``threshold``) and ``heldout_kl`` (mean KL per image in
    nats, unweighted), and prints one warning line the first time no unit is
    active.

    Args:
        x_heldout: ``(n, input_dim)`` images, fixed for the whole run (with their one-hot
            labels, ``[images, labels]``, for a conditional VAE).
        threshold: variance above which a dimension counts as active.
        verbose: print the warning line.
        name: the run the warning names (a population trains several).
    """

    def __init__(self, x_heldout, threshold: float = 0.01, verbose: bool = True,
                 name: str | None = None):
        super().__init__()
        self.x_heldout = x_heldout
        self.threshold = threshold
        self.verbose = verbose
        self.name = name
        self.warned = False

    def on_train_begin(self, logs=None):
        self.warned = False

    def on_epoch_end(self, epoch, logs=None):
        encoder = VAE.from_model(self.model).encoder  # self.model syncs the trained state (JAX)
        means, log_vars = predict(encoder, self.x_heldout)
        n_active = metrics.active_units(means, self.threshold)
        if logs is not None:
            logs["active_units"] = n_active
            logs["heldout_kl"] = float(metrics.kl_per_dimension(means, log_vars).sum())
        if n_active == 0 and not self.warned:
            self.warned = True
            if self.verbose:
                run = f"{self.name}: " if self.name else ""
                print(f"warning: {run}epoch {epoch + 1}: no active latent unit on the held-out "
                      f"batch (posterior collapse)", file=sys.stderr)


class ShuffleSeed(keras.callbacks.Callback):
    """Seeds NumPy's global RNG from (run seed, epoch) before each epoch's shuffle.

    ``fit(shuffle=True)`` permutes NumPy inputs with ``np.random`` after
    ``on_epoch_begin``; seeding it here makes epoch ``e``'s order a function of
    the run seed and ``e`` alone, so a resumed run sees the same batches.
    """

    def __init__(self, seed: int):
        super().__init__()
        self.seed = seed

    def on_epoch_begin(self, epoch, logs=None):
        np.random.seed(shuffle_seed(self.seed, epoch))


def shuffle_seed(seed: int, epoch: int) -> list[int]:
    """NumPy's seed for the order of 0-based epoch ``epoch`` of a run seeded ``seed``."""
    return [seed, epoch]


class ShardedShuffle(keras.callbacks.Callback):
    """One process's rows of each epoch's shuffled global batches, refreshed in place.

    Before each epoch, the permutation that ``fit(shuffle=True)`` draws in a
    one-process run (after :class:`ShuffleSeed`) is cut into global batches, and
    ``target[j] = source[rows[j]]`` for this process's rows
    (``cluster.local_rows``). Fed to ``fit`` with ``shuffle=False`` and
    ``batch // count`` rows per step, the processes together train on exactly the
    batches of the one-process run.

    Args:
        sources: the full arrays fit would get (images, and one-hot labels if any).
        targets: arrays of ``len(source) // count`` rows each, given to ``fit``.
        seed: the run seed.
        batch: the global batch size.
        count, index: the number of processes and this one's index.
    """

    def __init__(self, sources, targets, seed: int, batch: int, count: int, index: int):
        super().__init__()
        self.sources, self.targets = list(sources), list(targets)
        self.seed, self.batch, self.count, self.index = seed, batch, count, index

    def on_epoch_begin(self, epoch, logs=None):
        n = len(self.sources[0])
        order = np.random.RandomState(shuffle_seed(self.seed, epoch)).permutation(n)
        rows = local_rows(n, self.batch, self.count, self.index, order)
        for source, target in zip(self.sources, self.targets, strict=True):
            np.take(source, rows, axis=0, out=target)


class StopOnNonFinite(keras.callbacks.Callback):
    """Stops training at the first batch whose loss is NaN or infinite.

    ``where`` is then ``(epoch, batch)``, both 1-based; ``None`` otherwise. When
    several steps run per call (``steps_per_execution``), the check runs at the
    end of each group and the batch is found in the group's per-step logs.

    Args:
        key: the log to watch (a population member's is ``loss[i]``).
        stop: stop the fit; ``False`` only records ``where`` (a population stops a
            member, not the others).
    """

    def __init__(self, key: str = "loss", stop: bool = True):
        super().__init__()
        self.key, self.stop = key, stop
        self.where = None
        self._epoch = 0

    def on_train_begin(self, logs=None):
        self.where = None
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch + 1

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get(self.key)
        if loss is not None and not math.isfinite(float(loss)) and self.where is None:
            self.where = (self._epoch, self._first_bad_batch(batch))
            if self.stop:
                self.model.stop_training = True

    def _first_bad_batch(self, last: int) -> int:
        """1-based index of the first non-finite step in the group that ended at ``last``."""
        steps = self.model.steps_per_execution
        groups = getattr(self.model.train_function, "step_logs", None)
        if steps == 1 or not groups:
            return last + 1
        losses = np.concatenate([ops.convert_to_numpy(group[self.key]).reshape(-1)
                                 for group in groups])
        return last - steps + 1 + int(np.argmax(~np.isfinite(losses))) + 1


class Binarize(keras.callbacks.Callback):
    """Dynamic binarization: before each epoch, ``target[...] = uniform < gray``.

    ``target`` is the array given to ``fit`` (as input and target), refreshed in
    place; the draw depends on (seed, epoch) only, so a resumed run repeats it.
    """

    def __init__(self, gray: np.ndarray, target: np.ndarray, seed: int):
        super().__init__()
        if gray.shape != target.shape:
            raise ValueError(f"gray {gray.shape} and target {target.shape} must have the same shape")
        self.gray, self.target, self.seed = gray, target, seed

    def on_epoch_begin(self, epoch, logs=None):
        rng = np.random.default_rng([self.seed, epoch, 1])
        np.less(rng.random(self.gray.shape, dtype=np.float32), self.gray, out=self.target,
                casting="unsafe")
