"""Training's side of Ctrl-C and SIGTERM: :class:`StopOnSignal` ends ``fit`` at the next
batch or step-group end after a signal recorded by :func:`vaelab.signals.deferred`.

The mechanism itself (:class:`~vaelab.signals.Interrupted`, ``handled``, ``deferred``,
``pending``, ``check``) lives in :mod:`vaelab.signals`, below every role, so that the waits
of the analysis, the launcher and the grader can check it; its names are importable from
here too, as they were before.
"""

from __future__ import annotations

import keras

from vaelab.signals import Interrupted, check, deferred, handled, pending

__all__ = ["Interrupted", "StopOnSignal", "check", "deferred", "handled", "pending"]


class StopOnSignal(keras.callbacks.Callback):
    """Stops ``fit`` (and its validation) at the first batch end after a deferred signal."""

    def _check(self):
        if pending() is not None:
            self.model.stop_training = True
            self.model.stop_evaluating = True

    def on_train_batch_end(self, batch, logs=None):
        self._check()

    def on_test_batch_end(self, batch, logs=None):
        self._check()

    def on_epoch_begin(self, epoch, logs=None):
        self._check()
