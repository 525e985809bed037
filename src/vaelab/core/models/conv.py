"""A convolutional encoder and decoder in the style of Keras' VAE example.

Encoder: the image ``(side, side, 1)`` → Conv2D(32, 3×3, stride 2, relu) → Conv2D(64, 3×3,
stride 2, relu) → flatten → dense layers (``hidden``) → mean and log-variance heads.
Decoder, mirrored: dense layers → dense to ``(side/4, side/4, 64)`` → Conv2DTranspose(64,
stride 2, relu) → Conv2DTranspose(32, stride 2, relu) → Conv2DTranspose(1, 3×3, linear):
means for the Gaussian likelihood, logits for the Bernoulli one. Images arrive and leave
flattened, ``(B, side²)``, like every vaelab model.

The two stride-2 transposed convolutions are :class:`SubPixelConv2DTranspose` and the
encoder's convolutions :class:`PatchConv2D`: Keras' layers computed through matrix
products, without XLA's slow convolution gradients on a CPU (``docs/performance.md``);
the same functions of the same weights. Models saved before them load with Keras' own
layers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import keras

from vaelab.core.convolutions import PatchConv2D, SubPixelConv2DTranspose

FILTERS = (32, 64)
KERNEL = 3


def check_side(pixels: int) -> int:
    """The image side for ``pixels`` grayscale pixels; ``ValueError`` unless square with a
    side divisible by 4 (two stride-2 convolutions)."""
    side = math.isqrt(pixels)
    if side * side != pixels or side % 4:
        raise ValueError(f"--model conv needs square images whose side is divisible by 4; "
                         f"these have {pixels} pixels"
                         + (f" ({side}x{side})" if side * side == pixels else ""))
    return side


def conv_encoder(input_dim: int, hidden: Sequence[int], latent_dim: int, activation="relu",
                 classes: int = 0) -> keras.Model:
    """``x (B, side²) [, label (B, classes)] -> [mean, log_var]``; a label joins the flattened
    convolution features."""
    side = check_side(input_dim)
    x = keras.Input(shape=(input_dim,), name="x")
    inputs = [x]
    h = keras.layers.Reshape((side, side, 1))(x)
    for filters in FILTERS:
        h = PatchConv2D(filters, KERNEL, strides=2, padding="same", activation="relu")(h)
    h = keras.layers.Flatten()(h)
    if classes:
        label = keras.Input(shape=(classes,), name="label")
        inputs.append(label)
        h = keras.layers.Concatenate()([h, label])
    for i, width in enumerate(hidden):
        h = keras.layers.Dense(width, activation=activation, name=f"encoder_dense_{i + 1}")(h)
    mean = keras.layers.Dense(latent_dim, name="z_mean")(h)
    log_var = keras.layers.Dense(latent_dim, name="z_log_var")(h)
    return keras.Model(inputs if classes else x, [mean, log_var], name="encoder")


def conv_decoder(latent_dim: int, hidden: Sequence[int], output_dim: int, activation="relu",
                 classes: int = 0) -> keras.Model:
    """``z (B, latent) [, label (B, classes)] -> x̂ (B, side²)``; a label joins z."""
    side = check_side(output_dim)
    z = keras.Input(shape=(latent_dim,), name="z")
    inputs, h = [z], z
    if classes:
        label = keras.Input(shape=(classes,), name="label")
        inputs.append(label)
        h = keras.layers.Concatenate()([z, label])
    for i, width in enumerate(hidden):
        h = keras.layers.Dense(width, activation=activation, name=f"decoder_dense_{i + 1}")(h)
    quarter = side // 4
    h = keras.layers.Dense(quarter * quarter * FILTERS[-1], activation="relu")(h)
    h = keras.layers.Reshape((quarter, quarter, FILTERS[-1]))(h)
    for filters in reversed(FILTERS):
        h = SubPixelConv2DTranspose(filters, KERNEL, strides=2, padding="same",
                                    activation="relu")(h)
    h = keras.layers.Conv2DTranspose(1, KERNEL, padding="same", name="decoder_output")(h)
    x_hat = keras.layers.Reshape((output_dim,))(h)
    return keras.Model(inputs if classes else z, x_hat, name="decoder")
