"""Convolutions through matrix products: Keras' outputs and gradients, to 1e-5.

Run under JAX here and under torch by tests/test_backends.py.
"""

import keras
import numpy as np
import pytest
from conftest import jacobians
from keras import ops

from vaelab.core import convolutions
from vaelab.core.convolutions import PatchConv2D, SubPixelConv2DTranspose


@pytest.fixture(autouse=True)
def matrix_products(monkeypatch):
    """The matrix-product forms under every backend (by default only JAX uses them)."""
    monkeypatch.setattr(convolutions, "matmul_form", lambda: True)


def test_only_jax_computes_through_matrix_products_by_default(monkeypatch):
    monkeypatch.undo()
    assert convolutions.matmul_form() == (keras.backend.backend() == "jax")


def twins(shape, classes=(keras.layers.Conv2DTranspose, SubPixelConv2DTranspose), **settings):
    """Keras' layer and vaelab's (``classes``), built on ``shape`` with the same random
    weights."""
    reference, layer = (cls(**settings) for cls in classes)
    reference.build(shape)
    layer.build(shape)
    rng = np.random.default_rng(1)
    weights = [rng.normal(size=w.shape).astype("float32") for w in reference.get_weights()]
    reference.set_weights(weights)
    layer.set_weights(weights)
    return reference, layer


def assert_same_gradients(reference, layer, x, rng):
    """The gradients of a random projection of the two layers' outputs with respect to the
    input, the kernel and the bias (autodiff) agree to 1e-5, and are not all zero."""
    kernel, bias = (np.asarray(ops.convert_to_numpy(w)) for w in reference.weights)
    projection = rng.normal(size=reference.compute_output_shape(x.shape)).astype("float32")

    def projected(which):
        def fn(x, kernel, bias):
            out, _ = which.stateless_call([kernel, bias], [], x)
            return ops.sum(out * ops.convert_to_tensor(projection))
        return fn

    expected = jacobians(projected(reference), x, kernel, bias)
    got = jacobians(projected(layer), x, kernel, bias)
    for g, e, name in zip(got, expected, ("input", "kernel", "bias"), strict=True):
        assert np.abs(e).max() > 0, name
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("kernel, stride, side", [(3, 2, 8), (3, 2, 7), (4, 2, 8), (5, 2, 6),
                                                  (3, 3, 9), (5, 3, 4), (2, 2, 4), (3, 1, 5)])
def test_outputs_equal_keras(kernel, stride, side):
    """Kernels from the stride up to more than twice it, odd and even sides, and a stride
    of 1 (Keras' own computation)."""
    shape = (3, side, side, 4)
    reference, layer = twins(shape, filters=5, kernel_size=kernel, strides=stride,
                             padding="same", activation="relu")
    x = np.random.default_rng(2).normal(size=shape).astype("float32")
    expected, got = ops.convert_to_numpy(reference(x)), ops.convert_to_numpy(layer(x))
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_the_conv_vae_layers_have_keras_gradients():
    """The conv VAE's settings (3 × 3, stride 2, same): the gradient of a random projection
    of the output with respect to the input, the kernel and the bias, by autodiff."""
    shape = (2, 7, 7, 3)
    reference, layer = twins(shape, filters=4, kernel_size=3, strides=2, padding="same",
                             activation="tanh")
    rng = np.random.default_rng(3)
    assert_same_gradients(reference, layer, rng.normal(size=shape).astype("float32"), rng)


def test_settings_the_sub_pixel_form_does_not_take_fall_back_to_keras():
    """Valid padding, an output padding, a kernel smaller than the stride, dilation:
    Keras' own computation, so equal outputs whatever the form."""
    x = np.random.default_rng(4).normal(size=(2, 8, 8, 3)).astype("float32")
    for change in (dict(padding="valid"), dict(output_padding=1), dict(kernel_size=1),
                   dict(strides=1, dilation_rate=2)):
        settings = {"filters": 2, "kernel_size": 3, "strides": 2, "padding": "same", **change}
        reference, layer = twins(x.shape, **settings)
        assert not layer._sub_pixel()
        np.testing.assert_allclose(ops.convert_to_numpy(layer(x)),
                                   ops.convert_to_numpy(reference(x)), rtol=1e-6, atol=1e-6)


def test_a_model_with_it_saves_and_loads(tmp_path):
    """Registered under vaelab's package: a saved model loads with the same classes and
    computes the same outputs."""
    inputs = keras.Input((8, 8, 1))
    h = PatchConv2D(4, 3, strides=2, padding="same", activation="relu")(inputs)
    outputs = SubPixelConv2DTranspose(1, 3, strides=2, padding="same")(h)
    model = keras.Model(inputs, outputs)
    x = np.random.default_rng(5).normal(size=(2, 8, 8, 1)).astype("float32")
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras", safe_mode=True)
    assert [type(layer).__name__ for layer in loaded.layers[1:]] == [
        "PatchConv2D", "SubPixelConv2DTranspose"]
    np.testing.assert_allclose(ops.convert_to_numpy(loaded(x)), ops.convert_to_numpy(model(x)),
                               rtol=1e-6, atol=1e-6)


CONV = (keras.layers.Conv2D, PatchConv2D)


@pytest.mark.parametrize("kernel, stride, side, padding", [
    (3, 2, 28, "same"), (3, 2, 7, "same"), (3, 1, 6, "same"), (4, 2, 9, "same"),
    (2, 3, 8, "same"), (5, (2, 1), 7, "same"), (3, 2, 8, "valid"), (1, 1, 4, "valid"),
    ((3, 2), 2, 9, "valid")])
def test_patch_convolution_equals_keras(kernel, stride, side, padding):
    """Odd and even sides, kernels smaller and larger than the stride, unequal strides and
    kernel sides, both paddings: outputs, and the gradients for the input, kernel and bias
    of a random projection, equal Keras' to 1e-5."""
    shape = (2, side, side, 3)
    reference, layer = twins(shape, CONV, filters=4, kernel_size=kernel, strides=stride,
                             padding=padding, activation="tanh")
    assert layer._by_patches()
    rng = np.random.default_rng(7)
    x = rng.normal(size=shape).astype("float32")
    expected, got = ops.convert_to_numpy(reference(x)), ops.convert_to_numpy(layer(x))
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert_same_gradients(reference, layer, x, rng)


def test_patch_convolution_falls_back_where_it_does_not_apply():
    """Dilation and groups: Keras' own computation."""
    x = np.random.default_rng(8).normal(size=(2, 8, 8, 4)).astype("float32")
    for change in (dict(dilation_rate=2), dict(groups=2)):
        reference, layer = twins(x.shape, CONV, filters=2, kernel_size=3, padding="same",
                                 **change)
        assert not layer._by_patches()
        np.testing.assert_allclose(ops.convert_to_numpy(layer(x)),
                                   ops.convert_to_numpy(reference(x)), rtol=1e-6, atol=1e-6)


def test_a_model_of_unknown_image_size_computes_the_same():
    """Built on images of unknown size, both layers take Keras' shapes while building and
    compute Keras' values on a concrete batch."""
    inputs = keras.Input((None, None, 2))
    h = PatchConv2D(3, 3, strides=2, padding="same", activation="relu")(inputs)
    outputs = SubPixelConv2DTranspose(2, 3, strides=2, padding="same")(h)
    model = keras.Model(inputs, outputs)
    assert tuple(outputs.shape) == (None, None, None, 2)
    twin = keras.Sequential([keras.Input((None, None, 2)),
                             keras.layers.Conv2D(3, 3, strides=2, padding="same",
                                                 activation="relu"),
                             keras.layers.Conv2DTranspose(2, 3, strides=2, padding="same")])
    twin.set_weights(model.get_weights())
    x = np.random.default_rng(9).normal(size=(2, 10, 10, 2)).astype("float32")
    np.testing.assert_allclose(ops.convert_to_numpy(model(x)), ops.convert_to_numpy(twin(x)),
                               rtol=1e-5, atol=1e-5)
