"""Keras callbacks that steer and watch VAE training, and run a population member's own."""

from __future__ import annotations

import functools
import math
import sys

import keras
import numpy as np
from keras import ops

from vaelab.analysis import layers, metrics
from vaelab.core import keras_seam, schedules
from vaelab.core.latents import LatentStack
from vaelab.core.layers import _check_positive_int
from vaelab.core.models import VAE, sampling_layers
from vaelab.core.models.population import member_key, member_logs
from vaelab.dist.devices import predict


class KLSchedule(keras.callbacks.Callback):
    """Sets the KL weight of every sampling layer from a schedule, once per epoch.

    At the start of 1-based epoch ``e`` the weight becomes ``schedule(e)``.
    The weight is reached through ``self.model`` (never a captured variable),
    so the change reaches the compiled train step; the weight applied during
    the epoch is written to ``logs["kl_weight"]`` so it shows in ``History``.

    Args:
        schedule: a function ``epoch -> weight`` (see ``vaelab.core.schedules``).
        verbose: print one line per epoch with the weight.
    """

    def __init__(self, schedule: schedules.Schedule, verbose: bool = True):
        super().__init__()
        self.schedule = schedule
        self.verbose = verbose
        self.weight = None

    def _set(self, weight: float) -> None:
        model = keras_seam.synced_model(self)  # so that the compiled step sees the new weight
        layers = sampling_layers(model)
        if not layers:
            raise ValueError(f"{type(self).__name__} needs a model with a Sampling layer; "
                             f"{model.name!r} has none")
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
    (``vaelab.core.schedules.linear``). With the lab's (4, 8) and 20 epochs the weights
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
        vae = VAE.from_model(keras_seam.synced_model(self))
        if isinstance(vae.sampling, LatentStack):
            n_active, kl = self._layers(vae, logs)
        else:
            means, log_vars = predict(vae.encoder, self.x_heldout)
            n_active = metrics.active_units(means, self.threshold)
            kl = float(metrics.kl_per_dimension(means, log_vars).sum())
        if logs is not None:
            logs["active_units"] = n_active
            logs["heldout_kl"] = kl
        if n_active == 0 and not self.warned:
            self.warned = True
            if self.verbose:
                run = f"{self.name}: " if self.name else ""
                print(f"warning: {run}epoch {epoch + 1}: no active latent unit on the held-out "
                      f"batch (posterior collapse)", file=sys.stderr)


    def _layers(self, vae, logs) -> tuple[int, float]:
        """A richer latent model's active units and KL, summed over its layers
        (:func:`vaelab.analysis.layers.layer_statistics`); with several layers each one's
        active units are logged too, as ``active_units_1``, ``active_units_2``, …"""
        x, labels = self.x_heldout, None
        if isinstance(x, (list, tuple)):
            x, labels = x[0], np.argmax(np.asarray(x[1]), axis=1)
        stats = layers.layer_statistics(vae, np.asarray(x), samples=MONITOR_SAMPLES,
                                        labels=labels, threshold=self.threshold)
        if logs is not None and len(stats) > 1:
            for i, layer in enumerate(stats, start=1):
                logs[f"active_units_{i}"] = layer["active_units"]
        return sum(l["active_units"] for l in stats), float(sum(l["kl"] for l in stats))


MONITOR_SAMPLES = 100  # draws per held-out image behind a richer latent model's statistics


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


class MemberCallbacks(keras.callbacks.Callback):
    """One member's own callbacks, run on the member model with the member's own logs.

    Each hook first reaches the population through ``self.model`` (which, under JAX,
    writes the trained state back into the shared variables), then calls the member's
    callbacks with ``logs`` under their alone names (``loss``, ``kl_weight``, …); what they
    add is written back as ``name[i]``. Once ``guard`` has seen a non-finite loss the
    member's callbacks are no longer called.
    """

    def __init__(self, index: int, member: keras.Model, callbacks: list, guard: StopOnNonFinite):
        super().__init__()
        self.index, self.member, self.callbacks, self.guard = index, member, callbacks, guard
        for callback in callbacks:
            callback.set_model(member)

    def set_params(self, params):
        super().set_params(params)
        for callback in self.callbacks:
            callback.set_params(params)

    def _run(self, hook: str, *args, logs=None):
        if self.guard.where is not None:
            return
        keras_seam.synced_model(self)  # the population's state into the member's variables
        own = member_logs(logs, self.index) if logs is not None else None
        before = set(own or {})
        for callback in self.callbacks:
            getattr(callback, hook)(*args, own)
        if logs is not None:
            for key in set(own) - before:
                logs[member_key(key, self.index)] = own[key]

    def on_train_begin(self, logs=None):
        self._run("on_train_begin", logs=logs)

    def on_epoch_begin(self, epoch, logs=None):
        self._run("on_epoch_begin", epoch, logs=logs)

    def on_epoch_end(self, epoch, logs=None):
        self._run("on_epoch_end", epoch, logs=logs)

    def on_train_end(self, logs=None):
        self._run("on_train_end", logs=logs)


class StopWhenAllStopped(keras.callbacks.Callback):
    """Stops the population once every member's guard has seen a non-finite loss."""

    def __init__(self, guards: list[StopOnNonFinite]):
        super().__init__()
        self.guards = guards

    def on_train_batch_end(self, batch, logs=None):
        if all(guard.where is not None for guard in self.guards):
            self.model.stop_training = True


class PopulationProgress(keras.callbacks.Callback):
    """Keras' progress bar with each member's loss (``loss[i]``) rather than every log."""

    def __init__(self, members: int, mode: int):
        super().__init__()
        self.keys = [member_key("loss", i) for i in range(members)]
        self.mode = mode

    def on_epoch_begin(self, epoch, logs=None):
        print(f"Epoch {epoch + 1}/{self.params['epochs']}")
        self.bar = keras.utils.Progbar(self.params["steps"], verbose=self.mode,
                                       stateful_metrics=self.keys + ["val_" + k for k in self.keys])

    def _values(self, logs, prefix=""):
        return [(prefix + k, float(logs[prefix + k])) for k in self.keys
                if prefix + k in logs and math.isfinite(float(logs[prefix + k]))]

    def on_train_batch_end(self, batch, logs=None):
        if batch + 1 < self.params["steps"]:  # the last step's values come with the epoch's end
            self.bar.update(batch + 1, self._values(logs or {}))

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        self.bar.update(self.params["steps"], self._values(logs) + self._values(logs, "val_"),
                        finalize=True)
