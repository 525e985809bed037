"""The lab's models: the VAE (with its encoder and decoder) and the small classifier."""

from __future__ import annotations

import dataclasses
import itertools

import keras
from keras import ops

from vaelab.layers import OurDense, Sampling


@keras.saving.register_keras_serializable(package="vaelab")
class VAEModel(keras.Model):
    """A functional model whose loss is reported term by term.

    ``loss = reconstruction_loss + kl_loss`` where ``reconstruction_loss`` is
    the compiled loss (the lab's MSE: mean over pixels and batch) and
    ``kl_loss`` is the sum of the layer losses (the sampling layer's
    ``kl_weight · kl_scale · batch-mean KL``). Both appear in ``History``.
    Without targets (``fit(x)``) the inputs are the targets.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.reconstruction_tracker = keras.metrics.Mean(name="reconstruction_loss")
        self.kl_tracker = keras.metrics.Mean(name="kl_loss")

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if y is None:  # fit(x) without targets: reconstruct the inputs
            y = x
        if tuple(y.shape) != tuple(y_pred.shape):
            raise ValueError(
                f"targets and reconstructions must have the same shape, received "
                f"y={tuple(y.shape)} and y_pred={tuple(y_pred.shape)}")
        if self._compile_loss is None:
            raise ValueError("compile the VAE with a reconstruction loss, e.g. compile_vae(vae)")
        reconstruction = self._compile_loss(y, y_pred, sample_weight)
        if self.losses:
            kl = ops.sum(ops.stack([ops.cast(l, "float32") for l in self.losses]))
        else:
            kl = ops.zeros((), dtype="float32")
        self.reconstruction_tracker.update_state(reconstruction)
        self.kl_tracker.update_state(kl)
        return reconstruction + kl

    def make_train_function(self, force=False):
        """Keras' train function, except under JAX with ``steps_per_execution > 1``.

        There Keras would still dispatch one compiled step per batch from Python;
        here each run of equal-shaped batches in a group of ``steps_per_execution``
        is stacked and trained by one compiled ``jax.lax.scan`` over Keras' own
        ``train_step``. The steps, their order and their noise are the same; only
        the Python work between them is gone. Callbacks see the group's end, as
        Keras documents for ``steps_per_execution``; ``train_function.step_losses``
        then holds the running mean loss after each step of the group.
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


def _scanned_train_function(model: keras.Model, steps: int):
    """``(state, iterator) -> (logs, state)`` for up to ``steps`` batches (JAX only)."""
    import jax
    import numpy as np

    single = jax.jit(model.train_step, donate_argnums=0)

    def scan(state, batches):
        def body(state, batch):
            logs, state = model.train_step(state, batch)
            return state, logs

        state, logs = jax.lax.scan(body, state, batches)  # logs: each value (n,)
        return {name: value[-1] for name, value in logs.items()}, state, logs["loss"]

    scanned = jax.jit(scan, donate_argnums=0)

    def shapes(batch):
        return tuple(None if a is None else a.shape for a in keras.tree.flatten(batch))

    def stack(*arrays):
        return None if arrays[0] is None else np.stack(arrays)

    def function(state, iterator):
        batches = [next(iterator), *itertools.islice(iterator, steps - 1)]
        losses = []
        for _, group in itertools.groupby(batches, key=shapes):  # the last batch may be short
            group = list(group)
            if len(group) == 1:
                logs, state = single(state, group[0])
                losses.append(ops.reshape(logs["loss"], (1,)))
            else:
                logs, state, group_losses = scanned(state, keras.tree.map_structure(stack, *group))
                losses.append(group_losses)
        function.step_losses = losses
        return logs, state

    function.steps = steps
    function.step_losses = []
    return function


@keras.saving.register_keras_serializable(package="vaelab")
def bernoulli_nll(y_true, logits):
    """Per-example Bernoulli negative log-likelihood: Σ over pixels of BCE with logits, ``(batch,)``."""
    return ops.sum(ops.binary_crossentropy(y_true, logits, from_logits=True), axis=-1)


@dataclasses.dataclass(frozen=True)
class VAE:
    """The trainable model and two views on its layers (weights are shared).

    Attributes:
        model: ``x (batch, input_dim) -> x̂ (batch, input_dim)``.
        encoder: ``x -> [mean, log_var, z]``, each ``(batch, latent_dim)``.
        decoder: ``z (batch, latent_dim) -> x̂ (batch, input_dim)``.
    """

    model: VAEModel
    encoder: keras.Model
    decoder: keras.Model

    @property
    def sampling(self) -> Sampling:
        return self.model.get_layer("sampling")

    @classmethod
    def from_model(cls, model: keras.Model) -> "VAE":
        """Rebuild the encoder and decoder views of a (possibly loaded) VAE model."""
        encoder = keras.Model(
            model.inputs[0],
            [model.get_layer("z_mean").output, model.get_layer("z_log_var").output,
             model.get_layer("sampling").output],
            name="encoder")
        latent_dim = model.get_layer("z_mean").units
        z = keras.Input(shape=(latent_dim,), name="z")
        x_hat = model.get_layer("decoder_output")(model.get_layer("decoder_hidden")(z))
        decoder = keras.Model(z, x_hat, name="decoder")
        return cls(model, encoder, decoder)


def build_vae(input_dim=784, hidden_dim=512, latent_dim=32, kl_scale=1 / 784, seed=None) -> VAE:
    """The lab's VAE: 784 → 512 relu → (32 mean, 32 log-variance) → sample → 512 relu → 784.

    The output layer is linear (the lab's MSE model). The model is not
    compiled; use :func:`compile_vae` for the lab's MSE + Adam.
    """
    x = keras.Input(shape=(input_dim,), name="x")
    h = OurDense(hidden_dim, "relu", name="encoder_hidden")(x)             # (B, hidden)
    mean = OurDense(latent_dim, name="z_mean")(h)                           # (B, latent)
    log_var = OurDense(latent_dim, name="z_log_var")(h)                     # (B, latent)
    z = Sampling(kl_scale=kl_scale, seed=seed, name="sampling")([mean, log_var])
    h_dec = OurDense(hidden_dim, "relu", name="decoder_hidden")(z)         # (B, hidden)
    x_hat = OurDense(input_dim, name="decoder_output")(h_dec)               # (B, input_dim)
    return VAE.from_model(VAEModel(x, x_hat, name="vae"))


def compile_vae(vae: VAE, learning_rate=1e-3, likelihood="gaussian") -> VAE:
    """Compile with Adam and the reconstruction loss of the decoder likelihood.

    ``gaussian``: the lab's mean squared error (mean over pixels); ``bernoulli``: the
    decoder's outputs are logits and the loss is :func:`bernoulli_nll` (sum over pixels).
    """
    losses = {"gaussian": "mse", "bernoulli": bernoulli_nll}
    if likelihood not in losses:
        raise ValueError(f"likelihood must be 'gaussian' or 'bernoulli'. Received: likelihood={likelihood!r}")
    vae.model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=losses[likelihood])
    return vae


def build_classifier(input_dim=784, seed=None) -> keras.Model:
    """The lab's first example: OurDense(32, relu) → OurDense(10, softmax), compiled.

    Categorical cross-entropy on one-hot labels, Adam, accuracy.
    """
    if seed is not None:
        keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [keras.Input(shape=(input_dim,)), OurDense(32, "relu"), OurDense(10, "softmax")],
        name="classifier")
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    return model
