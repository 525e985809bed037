"""Contract tests: each assumption ``vaelab.core.keras_seam`` makes about Keras, against the
installed Keras. A failure names the Keras version and the assumption that broke; see
``docs/architecture.md`` ("The seam to Keras") for what to do then."""

import random

import keras
import numpy as np
import pytest

from vaelab.core import keras_seam
from vaelab.core.keras_seam import ScannedSteps

JAX = keras.backend.backend() == "jax"


def broken(assumption: str) -> str:
    return f"Keras {keras.__version__}: {assumption} no longer holds (vaelab.core.keras_seam)"


@keras.saving.register_keras_serializable(package="vaelab_tests")
class Scanned(ScannedSteps, keras.Sequential):
    pass


def regression(model_class, steps: int, seed: int = 0):
    """A small model fit for one epoch of 10 batches (the last short), ``steps`` per call."""
    with keras_seam.seeded(seed):
        model = model_class([keras.Input((4,)), keras.layers.Dense(3, "tanh"),
                             keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    keras_seam.set_steps_per_execution(model, steps)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(150, 4)).astype(np.float32)
    y = x.sum(axis=1, keepdims=True)
    calls = []
    logger = keras.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: calls.append(b))
    model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0, callbacks=[logger])
    return model, calls


@pytest.mark.skipif(not JAX, reason="scanned steps are a JAX-only path")
def test_scanned_steps_train_as_keras_own_loop():
    alone, _ = regression(keras.Sequential, 1)
    scanned, calls = regression(Scanned, 4)
    function = scanned.train_function
    assert getattr(function, "steps", None) == 4, broken(
        "fit builds its train function through Model.make_train_function")
    assert len(function.step_logs) >= 1 and "loss" in function.step_logs[0], broken(
        "the JAX trainer calls train_function(state, iterator) -> (logs, state)")
    for a, b in zip(alone.get_weights(), scanned.get_weights(), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6, err_msg=broken(
            "train_step(state, batch) -> (logs, state) is the whole of a JAX training step"))
    assert calls == [3, 7, 11], broken(  # 10 batches; Keras numbers a group by begin + steps - 1
        "fit calls the train function once per group of steps_per_execution batches and the "
        "callbacks at the group's end")


def test_steps_per_execution_can_be_set_after_compile():
    _, calls = regression(keras.Sequential, 5)
    assert calls == [4, 9], broken("fit reads the steps_per_execution attribute when it starts")


class Recorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seen = None

    def on_epoch_end(self, epoch, logs=None):
        self.seen = [w.copy() for w in keras_seam.synced_model(self).get_weights()]


class ZeroTheOutput(keras.callbacks.Callback):
    """Sets the last layer's bias to 7 at each epoch's start, through the callback's model."""

    def on_epoch_begin(self, epoch, logs=None):
        keras_seam.synced_model(self).layers[-1].bias.assign(np.full((1,), 7.0, np.float32))


def test_a_callbacks_model_holds_the_trained_state_both_ways():
    with keras_seam.seeded(1):
        model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    recorder = Recorder()
    x = np.ones((32, 2), np.float32)
    model.fit(x, x[:, :1], epochs=1, batch_size=8, verbose=0, shuffle=False,
              callbacks=[ZeroTheOutput(), recorder])
    assert recorder.seen[-1][0] == pytest.approx(7.0), broken(
        "a variable assigned through Callback.model reaches the compiled train step, and the "
        "callback's model holds the trained state")
    np.testing.assert_array_equal(recorder.seen[-1], model.get_weights()[-1])


def test_adams_slots_are_found_per_variable():
    """The state copied into a second Adam makes the same next step as the first's."""
    variables = [keras.Variable(np.full((3,), 1.0, np.float32)),
                 keras.Variable(np.full((2, 2), -1.0, np.float32))]
    trained, copy = keras.optimizers.Adam(0.1), keras.optimizers.Adam(0.1)
    trained.build(variables)
    for step in range(3):
        grads = [np.full((3,), 0.5 + step, np.float32), np.full((2, 2), -2.0 * step, np.float32)]
        trained.apply_gradients(zip(grads, variables))
    try:
        keras_seam.copy_adam_state(trained, copy, variables)
    except (AttributeError, IndexError, KeyError, TypeError) as exc:
        pytest.fail(broken(f"Adam keeps _momentums/_velocities per variable, found by "
                           f"_get_variable_index ({exc!r})"))
    start = [v.numpy() for v in variables]
    after = []
    for optimizer in (trained, copy):
        for variable, value in zip(variables, start):
            variable.assign(value)
        optimizer.apply_gradients(zip(grads, variables))
        after.append([v.numpy() for v in variables])
    assert not np.array_equal(after[0][0], start[0])
    for a, b in zip(*after):
        np.testing.assert_array_equal(a, b, err_msg=broken(
            "Adam's state is its iterations, learning rate and two slots per variable"))


def test_seeded_fixes_initial_weights_and_leaves_numpy_and_random_alone():
    np.random.seed(5)
    random.seed(6)
    numpy_before, random_before = np.random.get_state()[1].copy(), random.getstate()

    def weights(seed):
        with keras_seam.seeded(seed):
            model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4)])
        return model.get_weights()[0]

    np.testing.assert_array_equal(weights(3), weights(3), err_msg=broken(
        "an initializer without a seed draws one from Python's random when it is made"))
    assert not np.array_equal(weights(3), weights(4))
    np.testing.assert_array_equal(np.random.get_state()[1], numpy_before)
    assert random.getstate() == random_before


class Refill(keras.callbacks.Callback):
    def __init__(self, target, source):
        super().__init__()
        self.target, self.source = target, source

    def on_epoch_begin(self, epoch, logs=None):
        self.target[...] = self.source[::-1] if epoch % 2 else self.source


@pytest.mark.parametrize("steps", [1, 3])
def test_fit_reads_numpy_arrays_refilled_before_each_epoch(steps):
    rng = np.random.default_rng(2)
    data = rng.normal(size=(64, 4)).astype(np.float32)
    models = []
    for refill in (True, False):
        with keras_seam.seeded(0):
            model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4)])
        model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
        keras_seam.set_steps_per_execution(model, steps)
        if refill:
            x = np.zeros_like(data)
            model.fit(x, x, epochs=2, batch_size=16, shuffle=False, verbose=0,
                      callbacks=[Refill(x, data)])
        else:
            for epoch in range(2):
                arrays = data[::-1] if epoch % 2 else data
                model.fit(arrays, arrays, epochs=1, batch_size=16, shuffle=False, verbose=0)
        models.append(model)
    for a, b in zip(*(m.get_weights() for m in models), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7, err_msg=broken(
            "fit slices NumPy arrays of floatx batch by batch, after on_epoch_begin (no copy)"))
