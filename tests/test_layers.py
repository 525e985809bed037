import keras
import numpy as np
import pytest
from conftest import jacobians  # the backend's autodiff (JAX or torch)
from keras import ops

from vaelab.core.divergences import kl_standard_normal
from vaelab.core.layers import OurDense, Sampling


def to_np(x):
    if isinstance(x, keras.Variable):
        x = x.value
    return np.asarray(ops.convert_to_numpy(x))


# ---------------------------------------------------------------- OurDense


def test_our_dense_shapes_and_weights():
    layer = OurDense(7, activation="relu")
    y = layer(np.ones((3, 5), np.float32))
    assert tuple(y.shape) == (3, 7)
    assert layer.compute_output_shape((None, 5)) == (None, 7)
    assert len(layer.trainable_weights) == 2 and len(layer.non_trainable_weights) == 0
    assert tuple(layer.kernel.shape) == (5, 7) and tuple(layer.bias.shape) == (7,)
    assert to_np(y).min() >= 0  # relu


def test_our_dense_matches_formula():
    layer = OurDense(4, activation="tanh")
    x = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
    y = to_np(layer(x))
    expected = np.tanh(x @ to_np(layer.kernel) + to_np(layer.bias))
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)


def test_our_dense_initializers():
    keras.utils.set_random_seed(0)
    layer = OurDense(512)
    layer.build((None, 784))
    kernel = to_np(layer.kernel)
    # Glorot normal: std sqrt(2 / (fan_in + fan_out)).
    assert kernel.std() == pytest.approx(np.sqrt(2 / (784 + 512)), rel=0.02)
    assert abs(kernel.mean()) < 1e-3
    # Truncated: no draw beyond a few standard deviations (JAX cuts at 2σ of the base normal).
    assert np.abs(kernel).max() <= 3 * np.sqrt(2 / (784 + 512)) / 0.87962566
    np.testing.assert_array_equal(to_np(layer.bias), 0)


@pytest.mark.parametrize("units", [0, -3, 2.5, "8", True, None])
def test_our_dense_rejects_bad_units(units):
    with pytest.raises(ValueError, match=f"Received: units={units!r}"):
        OurDense(units)


def test_our_dense_refuses_an_input_of_another_width_once_built():
    layer = OurDense(3)
    layer(np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match=r"expected axis -1 of input shape to have value 4, "
                                         r"but received input with shape \(2, 5\)"):
        layer(np.zeros((2, 5), np.float32))


def test_our_dense_config_round_trip():
    layer = OurDense(9, activation="softmax", name="d")
    clone = OurDense.from_config(layer.get_config())
    assert clone.units == 9 and clone.name == "d"
    assert clone.activation is keras.activations.softmax


def test_our_dense_training_step_reduces_loss():
    keras.utils.set_random_seed(1)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(256, 4)).astype(np.float32)
    y = x @ rng.normal(size=(4, 2)).astype(np.float32)
    model = keras.Sequential([keras.Input((4,)), OurDense(2)])
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse")
    before = model.evaluate(x, y, verbose=0)
    model.fit(x, y, epochs=20, batch_size=64, verbose=0)
    assert model.evaluate(x, y, verbose=0) < 0.1 * before


# ---------------------------------------------------------------- Sampling


def test_sampling_moments():
    n = 200_000
    mean = np.tile(np.array([[1.5, -2.0, 0.0]], np.float32), (n, 1))
    log_var = np.tile(np.array([[0.0, np.log(0.25), np.log(4.0)]], np.float32), (n, 1))
    z = to_np(Sampling(seed=3)([mean, log_var]))
    assert z.shape == (n, 3)
    var = np.array([1.0, 0.25, 4.0])
    se_mean = np.sqrt(var / n)
    assert np.all(np.abs(z.mean(0) - mean[0]) < 5 * se_mean)
    se_var = var * np.sqrt(2 / (n - 1))
    assert np.all(np.abs(z.var(0, ddof=1) - var) < 5 * se_var)


def test_sampling_noise_changes_between_calls_and_repeats_with_seed():
    mean, log_var = np.zeros((4, 2), np.float32), np.zeros((4, 2), np.float32)
    layer = Sampling(seed=7)
    first, second = to_np(layer([mean, log_var])), to_np(layer([mean, log_var]))
    assert not np.allclose(first, second)
    np.testing.assert_array_equal(first, to_np(Sampling(seed=7)([mean, log_var])))


@pytest.mark.parametrize("kl_scale", [1 / 784, 1.0])
def test_sampling_added_loss_matches_formula(kl_scale):
    rng = np.random.default_rng(5)
    mean = rng.normal(size=(8, 4)).astype(np.float32)
    log_var = rng.normal(size=(8, 4)).astype(np.float32)
    layer = Sampling(kl_scale=kl_scale, seed=0)
    layer([mean, log_var])
    layer.kl_weight.assign(0.3)
    layer([mean, log_var])
    assert len(layer.losses) == 1
    kl = -0.5 * np.sum(1 + log_var - mean**2 - np.exp(log_var), axis=-1)
    assert float(to_np(layer.losses[0])) == pytest.approx(0.3 * kl_scale * kl.mean(), rel=1e-5)
    np.testing.assert_allclose(to_np(kl_standard_normal(mean, log_var)), kl, rtol=1e-5)


def test_sampling_kl_weight_is_non_trainable_weight():
    layer = Sampling()
    layer([np.zeros((2, 3), np.float32)] * 2)
    assert layer.trainable_weights == []
    names = [w.path for w in layer.non_trainable_weights]
    assert any(name.endswith("kl_weight") for name in names)
    assert float(to_np(layer.kl_weight)) == 1.0


@pytest.mark.parametrize("kl_scale", [0, -1.0, float("nan"), float("inf"), "1/784"])
def test_sampling_rejects_bad_scale(kl_scale):
    with pytest.raises(ValueError, match="Received: kl_scale="):
        Sampling(kl_scale=kl_scale)


def test_sampling_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match=r"same shape"):
        Sampling()([np.zeros((2, 3), np.float32), np.zeros((2, 4), np.float32)])


def test_sampling_config_round_trip():
    layer = Sampling(kl_scale=0.5, seed=11, name="s")
    clone = Sampling.from_config(layer.get_config())
    assert (clone.kl_scale, clone.seed, clone.name) == (0.5, 11, "s")


def test_sampling_gradients_are_the_reparametrization():
    """z = μ + exp(log σ² / 2)·ε: ∂z/∂μ = 1 and ∂z/∂log σ² = ½ ε exp(log σ² / 2), elementwise
    (no cross terms), with ε = (z − μ)/exp(log σ² / 2) from the same call; and the KL the
    layer adds has the closed-form gradients of ``kl_weight · kl_scale · mean_b KL_b``.

    ``stateless_call`` runs the layer on a fixed copy of its variables, the noise seed
    included, so every evaluation draws the same ε and nothing leaks out of the traced
    function (the added loss is returned instead of stored).
    """
    rng = np.random.default_rng(6)
    mean = rng.normal(0, 1.5, (3, 4)).astype(np.float32)
    log_var = rng.normal(0, 1.0, (3, 4)).astype(np.float32)
    layer = Sampling(kl_scale=0.5, seed=9)
    layer([mean, log_var])                                  # build; advances the seed once
    layer.kl_weight.assign(0.3)
    # Copies: torch's variables are updated in place by the layer's next call.
    trainable = [ops.copy(v.value) for v in layer.trainable_variables]
    non_trainable = [ops.copy(v.value) for v in layer.non_trainable_variables]

    def stateless(m, v):  # (z, [added loss]); stateless_call skips __call__'s input conversion
        inputs = [ops.convert_to_tensor(m), ops.convert_to_tensor(v)]
        z, _, losses = layer.stateless_call(trainable, non_trainable, inputs, return_losses=True)
        assert len(losses) == 1
        return z, losses[0]

    def sample(m, v):
        return stateless(m, v)[0]

    def added_loss(m, v):
        return stateless(m, v)[1]

    z = to_np(sample(mean, log_var)).astype(np.float64)
    # The stateless path is the layer's own computation: its next real call draws the same ε.
    np.testing.assert_array_equal(to_np(layer([mean, log_var])), z)
    std = np.exp(0.5 * log_var.astype(np.float64))
    eps = (z - mean) / std
    assert 0.3 < np.abs(eps).mean() < 1.5                   # a real draw, not zeros

    d_mean, d_log_var = jacobians(sample, mean, log_var)   # (3, 4, 3, 4) each
    identity = np.eye(12).reshape(3, 4, 3, 4)
    np.testing.assert_allclose(d_mean, identity, rtol=0, atol=1e-6)
    np.testing.assert_allclose(d_log_var, identity * (0.5 * eps * std)[:, :, None, None],
                               rtol=1e-5, atol=1e-6)

    g_mean, g_log_var = jacobians(added_loss, mean, log_var)   # (3, 4) each: the loss is scalar
    factor = 0.3 * 0.5 / len(mean)                             # kl_weight · kl_scale / batch
    np.testing.assert_allclose(g_mean, factor * mean, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(g_log_var, factor * 0.5 * (np.exp(log_var.astype(np.float64)) - 1),
                               rtol=1e-5, atol=1e-7)
