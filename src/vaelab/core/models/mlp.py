"""The lab's models: the MLP encoder and decoder (any hidden widths) and the classifier."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import keras

from vaelab.core.keras_seam import seeded
from vaelab.core.latents import LatentStack
from vaelab.core.layers import OurDense, Sampling
from vaelab.core.models.conv import conv_decoder, conv_encoder
from vaelab.core.models.vae import VAE, assemble


def _widths(hidden) -> list[int]:
    return [hidden] if isinstance(hidden, int) else list(hidden)


def _hidden_name(prefix: str, i: int, count: int) -> str:
    return prefix if count == 1 else f"{prefix}_{i + 1}"


def mlp_encoder(input_dim: int, hidden: int | Sequence[int], latent_dim: int,
                activation: str = "relu", classes: int = 0) -> keras.Model:
    """``x (B, input_dim) [, label (B, classes)] -> [mean, log_var]`` (each ``(B, latent_dim)``):
    hidden layers with ``activation``, then two linear heads; a one-hot label (conditional
    VAE) is concatenated to x."""
    x = keras.Input(shape=(input_dim,), name="x")
    h, widths = x, _widths(hidden)
    if classes:
        label = keras.Input(shape=(classes,), name="label")
        h = keras.layers.Concatenate()([x, label])
    for i, width in enumerate(widths):
        h = OurDense(width, activation, name=_hidden_name("encoder_hidden", i, len(widths)))(h)
    mean = OurDense(latent_dim, name="z_mean")(h)                           # (B, latent)
    log_var = OurDense(latent_dim, name="z_log_var")(h)                     # (B, latent)
    return keras.Model([x, label] if classes else x, [mean, log_var], name="encoder")


def mlp_decoder(latent_dim: int, hidden: int | Sequence[int], output_dim: int,
                activation: str = "relu", classes: int = 0) -> keras.Model:
    """``z (B, latent_dim) [, label (B, classes)] -> x̂ (B, output_dim)``: hidden layers with
    ``activation``, then a linear output layer (means or logits); a label joins z."""
    z = keras.Input(shape=(latent_dim,), name="z")
    h, widths = z, _widths(hidden)
    if classes:
        label = keras.Input(shape=(classes,), name="label")
        h = keras.layers.Concatenate()([z, label])
    for i, width in enumerate(widths):
        h = OurDense(width, activation, name=_hidden_name("decoder_hidden", i, len(widths)))(h)
    x_hat = OurDense(output_dim, name="decoder_output")(h)
    return keras.Model([z, label] if classes else z, x_hat, name="decoder")


def build_vae(input_dim=784, hidden_dim=512, latent_dim=32, kl_scale=1 / 784, seed=None,
              likelihood="gaussian", activation="relu", model="mlp", classes=0,
              free_bits=0.0, objective="elbo", upper=(), flow_steps=0,
              components=0, flow_context=False) -> VAE:
    """The lab's VAE: 784 → 512 relu → (32 mean, 32 log-variance) → sample → 512 relu → 784.

    ``hidden_dim`` may be a list of widths (the decoder mirrors it). ``model="conv"`` puts
    the convolutional encoder and decoder of :mod:`vaelab.core.models.conv` around the same
    sampling layer; ``classes > 0`` makes a conditional VAE (a one-hot label of that many
    classes is a second input of the encoder and the decoder). The output layer is
    linear: means for the Gaussian likelihood, logits for the Bernoulli one. ``free_bits``
    goes to the sampling layer, ``objective`` (``"elbo"`` or ``"iwae:K"``) to the model. The model
    is not compiled; use :func:`vaelab.core.models.compile_vae` for the lab's Adam. Layers
    are built in the order encoder, sampling, decoder (the weights drawn under
    :func:`vaelab.core.keras_seam.seeded` depend on it).

    Richer latent models (:mod:`vaelab.core.latents`): ``upper`` lists the stochastic layers
    above the first, ``[(latent, widths), …]`` bottom-up (Burda et al.'s two-layer model is
    ``hidden_dim=(200, 200), latent_dim=100, upper=[(50, (100, 100))]``); ``flow_steps``
    IAF steps on the posterior (each MADE two hidden layers of the encoder's last hidden
    width; with ``flow_context`` each also sees the encoder's mean and log-variance);
    ``components`` the VampPrior's K pseudo-inputs.
    """
    encode, decode = (conv_encoder, conv_decoder) if model == "conv" else (mlp_encoder, mlp_decoder)
    encoder = encode(input_dim, _widths(hidden_dim), latent_dim, activation, classes)
    if upper or flow_steps or components:
        sampling = LatentStack(upper, activation, flow_steps, _widths(hidden_dim)[-1],
                               components, kl_scale=kl_scale, seed=seed, free_bits=free_bits,
                               flow_context=flow_context, name="sampling")
    else:
        sampling = Sampling(kl_scale=kl_scale, seed=seed, free_bits=free_bits, name="sampling")
    decoder = decode(latent_dim, list(reversed(_widths(hidden_dim))), input_dim, activation,
                     classes)
    return assemble(encoder, sampling, decoder, likelihood, objective=objective)


def build_classifier(input_dim=784, seed=None) -> keras.Model:
    """The lab's first example: OurDense(32, relu) → OurDense(10, softmax), compiled.

    Categorical cross-entropy on one-hot labels, Adam, accuracy.
    """
    with contextlib.nullcontext() if seed is None else seeded(seed):
        model = keras.Sequential(
            [keras.Input(shape=(input_dim,)), OurDense(32, "relu"), OurDense(10, "softmax")],
            name="classifier")
        model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    return model
