"""Every use vaelab makes of Keras behaviour that Keras does not document as public.

Each function here names the assumption it rests on; ``tests/test_keras_seam.py`` checks
each against the installed Keras and fails with a message naming the Keras version and
the assumption that broke. ``pyproject.toml`` bounds Keras to the minor versions these
tests passed on; an upgrade is ``make lock`` then ``make test`` (``docs/architecture.md``).

1. **Scanned train steps** (:class:`ScannedSteps`): the JAX trainer builds its train
   function in ``make_train_function`` and calls it as ``train_function(state, iterator)
   -> (logs, state)``, pulling ``steps_per_execution`` batches from ``iterator``.
2. **Steps per execution after compile** (:func:`set_steps_per_execution`): ``fit`` reads
   the ``steps_per_execution`` attribute when it starts.
3. **A callback's model is in sync** (:func:`synced_model`): under JAX, ``Callback.model``
   writes the trained state into the model's variables before returning it.
4. **Adam's slots** (:func:`copy_adam_state`): one ``_momentums`` and one ``_velocities``
   variable per trained variable, found by ``_get_variable_index``.
5. **Initial weights from Python's ``random``** (:func:`seeded`): an initializer without a
   seed draws one from Python's global ``random`` when it is made
   (``keras.random.make_default_seed``), so seeding that generator fixes the weights;
   NumPy's global generator plays no part.
6. **fit reads NumPy arrays as it goes** (:class:`vaelab.training.feeding.Feed`): ``fit`` on NumPy
   arrays of Keras' float type (or integers) keeps them, uncopied, and slices each batch
   when the step needs it, after ``on_epoch_begin``; so arrays refilled in place by a
   callback's ``on_epoch_begin`` are that epoch's batches.
"""

from __future__ import annotations

import contextlib
import itertools
import random

import keras
import numpy as np
from keras import ops

ADAM_SLOTS = ("_momentums", "_velocities")  # Keras' Adam: one of each per variable


class ScannedSteps:
    """Keras' train function, except under JAX with ``steps_per_execution > 1``.

    Mixed into a ``keras.Model`` (before it): vaelab's ``VAEModel`` and ``Population``
    train their steps this way.
    """

    def make_train_function(self, force=False):
        """There Keras would still dispatch one compiled step per batch from Python;
        here each run of equal-shaped batches in a group of ``steps_per_execution``
        is stacked and trained by one compiled ``jax.lax.scan`` over Keras' own
        ``train_step``. The steps, their order and their noise are the same; only
        the Python work between them is gone. Callbacks see the group's end, as
        Keras documents for ``steps_per_execution``; ``train_function.step_losses``
        then holds the running mean loss after each step of the group, and
        ``train_function.step_logs`` every log after each step (a dict of arrays).
        """
        steps = self.steps_per_execution
        scanned = (steps > 1 and keras.backend.backend() == "jax" and not self.run_eagerly
                   and self.jit_compile and keras.distribution.distribution() is None)
        current = getattr(self.train_function, "steps", 1)
        if self.train_function is not None and not force and current == (steps if scanned else 1):
            return
        if not scanned:
            super().make_train_function(force=True)
            return
        self.train_function = _scanned_train_function(self, steps)


def _has_convolutions(model: keras.Model) -> bool:
    layers = list(model.layers)
    while layers:
        layer = layers.pop()
        if isinstance(layer, keras.layers.Conv2D):
            return True
        if isinstance(layer, keras.Model):
            layers += layer.layers
    return False


def _scanned_train_function(model: keras.Model, steps: int):
    """``(state, iterator) -> (logs, state)`` for up to ``steps`` batches (JAX only)."""
    import jax

    single = jax.jit(model.train_step, donate_argnums=0)
    # XLA's CPU convolutions inside a rolled loop ran 2.5x slower than as single steps
    # (conv model, 2 048 images at batch 32: 17.1 s against 6.8 s an epoch); unrolled
    # groups run at the single-step pace (6.7 s). Dense models keep the rolled loop.
    unroll = steps if _has_convolutions(model) else 1

    def scan(state, batches):
        def body(state, batch):
            logs, state = model.train_step(state, batch)
            return state, logs

        state, logs = jax.lax.scan(body, state, batches, unroll=unroll)  # logs: each (n,)
        return {name: value[-1] for name, value in logs.items()}, state, logs

    scanned = jax.jit(scan, donate_argnums=0)

    def shapes(batch):
        return tuple(None if a is None else a.shape for a in keras.tree.flatten(batch))

    def stack(*arrays):
        return None if arrays[0] is None else np.stack(arrays)

    def function(state, iterator):
        batches = [next(iterator), *itertools.islice(iterator, steps - 1)]
        step_logs = []
        for _, group in itertools.groupby(batches, key=shapes):  # the last batch may be short
            group = list(group)
            if len(group) == 1:
                logs, state = single(state, group[0])
                step_logs.append({name: ops.reshape(value, (1,)) for name, value in logs.items()})
            else:
                logs, state, group_logs = scanned(state, keras.tree.map_structure(stack, *group))
                step_logs.append(group_logs)
        function.step_logs = step_logs
        function.step_losses = [group["loss"] for group in step_logs]
        return logs, state

    function.steps = steps
    function.step_losses = []
    function.step_logs = []
    return function


def set_steps_per_execution(model: keras.Model, steps: int) -> None:
    """Train ``steps`` batches per compiled call from the next ``fit`` on (a compiled model)."""
    model.steps_per_execution = int(steps)


def synced_model(callback: keras.callbacks.Callback) -> keras.Model:
    """The callback's model, its variables holding the trained state (JAX: synced first)."""
    return callback.model


def copy_adam_state(source, target, variables) -> None:
    """``target``'s Adam state for ``variables`` := ``source``'s (both Keras Adam
    optimizers built over ``variables``; ``target`` is built here if it is not)."""
    for optimizer in (source, target):
        if not isinstance(optimizer, keras.optimizers.Adam) or optimizer.amsgrad:
            raise ValueError(f"a population copies Adam's state; received "
                             f"{type(optimizer).__name__}")
    if not target.built:
        target.build(variables)
    target.iterations.assign(source.iterations)
    target.learning_rate = float(ops.convert_to_numpy(source.learning_rate))
    for variable in variables:
        for slot in ADAM_SLOTS:
            value = getattr(source, slot)[source._get_variable_index(variable)]
            getattr(target, slot)[target._get_variable_index(variable)].assign(value)


@contextlib.contextmanager
def seeded(seed: int):
    """Within: the initial weights of new layers depend on ``seed`` alone. Python's global
    ``random`` is seeded with ``seed`` and put back as it was on leaving; NumPy's global
    generator is not touched (``keras.utils.set_random_seed`` would seed it)."""
    state = random.getstate()
    random.seed(seed)
    try:
        yield
    finally:
        random.setstate(state)
