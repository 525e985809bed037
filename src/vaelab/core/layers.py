"""The lab's two custom Keras layers: a hand-written dense layer and the sampling layer."""

from __future__ import annotations

import math

import keras
from keras import ops

from vaelab.core.divergences import kl_standard_normal, kl_standard_normal_elementwise


def _check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer. Received: {name}={value!r}")
    return value


def _check_positive_float(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number. Received: {name}={value!r}")
    return float(value)


@keras.saving.register_keras_serializable(package="vaelab")
class OurDense(keras.layers.Layer):
    """A densely connected layer written by hand, as in the lab.

    ``output = activation(dot(inputs, kernel) + bias)``, with a Glorot-normal
    kernel and a zero bias, both created in ``build``.

    Args:
        units: positive int, dimensionality of the output.
        activation: activation name or callable; ``None`` means linear.

    Input shape:
        ``(batch_size, ..., input_dim)``.

    Output shape:
        ``(batch_size, ..., units)``.
    """

    def __init__(self, units, activation=None, **kwargs):
        super().__init__(**kwargs)
        self.units = _check_positive_int("units", units)
        self.activation = keras.activations.get(activation)

    def build(self, input_shape):
        self.kernel = self.add_weight(
            name="kernel", shape=(input_shape[-1], self.units), initializer="glorot_normal")
        self.bias = self.add_weight(name="bias", shape=(self.units,), initializer="zeros")
        # A later input of another width fails here, naming the layer, not in the matmul.
        self.input_spec = keras.layers.InputSpec(min_ndim=2, axes={-1: input_shape[-1]})

    def call(self, inputs):
        return self.activation(ops.matmul(inputs, self.kernel) + self.bias)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def get_config(self):
        return {**super().get_config(), "units": self.units,
                "activation": keras.activations.serialize(self.activation)}


@keras.saving.register_keras_serializable(package="vaelab")
class Sampling(keras.layers.Layer):
    """Draws ``z ~ N(mean, diag(exp(log_var)))`` by the reparametrization trick.

    ``z = mean + exp(log_var / 2) · ε`` with ``ε ~ N(0, I)`` drawn from a
    layer-owned ``keras.random.SeedGenerator``, and adds to the model's losses::

        kl_weight · kl_scale · mean over the batch of KL(q(z|x) || N(0, I))

    where the KL is summed over latent dimensions (nats per example).
    ``kl_scale = 1/784`` puts it on the scale of a per-pixel mean squared error
    for 28×28 images (the lab's choice); ``kl_scale = 1`` is the unscaled KL
    that makes the lab's model collapse. ``kl_weight`` is a non-trainable
    weight (initially 1.0) so a callback can anneal it in a compiled train step.

    With ``free_bits = λ > 0`` (Kingma et al. 2016) the KL term is instead
    ``kl_weight · kl_scale · Σ_d max(λ, KL_d)`` with ``KL_d`` the KL of latent
    dimension d averaged over the batch: a dimension below λ nats costs λ and
    gets no gradient from the KL.

    Args:
        kl_scale: positive float multiplying the KL term.
        seed: int or ``None``, seed of the noise generator.
        free_bits: non-negative float λ, nats per latent dimension (0: the plain KL).

    Input shape:
        ``[(batch_size, latent), (batch_size, latent)]``: mean and log-variance.

    Output shape:
        ``(batch_size, latent)``.
    """

    def __init__(self, kl_scale=1 / 784, seed=None, free_bits=0.0, **kwargs):
        super().__init__(**kwargs)
        self.kl_scale = _check_positive_float("kl_scale", kl_scale)
        self.free_bits = 0.0 if free_bits == 0 else _check_positive_float("free_bits", free_bits)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape):
        mean_shape, log_var_shape = input_shape
        if tuple(mean_shape) != tuple(log_var_shape):
            raise ValueError(
                "Sampling expects mean and log_var of the same shape. "
                f"Received: {tuple(mean_shape)} and {tuple(log_var_shape)}")
        self.kl_weight = self.add_weight(
            name="kl_weight", shape=(), initializer=keras.initializers.Constant(1.0),
            trainable=False)

    def call(self, inputs):
        mean, log_var = inputs
        if self.free_bits:
            per_dimension = ops.mean(kl_standard_normal_elementwise(mean, log_var), axis=0)  # (L,)
            kl = ops.sum(ops.maximum(per_dimension, self.free_bits))
        else:
            kl = ops.mean(kl_standard_normal(mean, log_var))  # batch mean of (batch,)
        self.add_loss(self.kl_weight * self.kl_scale * kl)
        epsilon = self.noise(ops.shape(mean), mean.dtype)
        return mean + ops.exp(0.5 * log_var) * epsilon

    def noise(self, shape, dtype="float32"):
        """Standard normal draws of ``shape`` from the layer's seed generator."""
        return keras.random.normal(shape, dtype=dtype, seed=self.seed_generator)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])

    def get_config(self):
        return {**super().get_config(), "kl_scale": self.kl_scale, "seed": self.seed,
                "free_bits": self.free_bits}
