"""The VAE: an encoder and a decoder sub-model joined by a sampling layer, with a likelihood.

The trainable model is ``x → encoder → [mean, log_var] → Sampling → z → decoder → x̂``
(a functional ``VAEModel``). Any encoder ``x → [mean, log_var]`` and decoder
``z → x̂`` Keras models can be joined (:func:`assemble`); the lab's MLP is one
builder (``vaelab.core.models.mlp``). Code that needs the encoder or the decoder gets it
from the :class:`VAE` object, never by a layer name.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
from keras import ops

from vaelab.core import latents, likelihoods, objectives
from vaelab.core.keras_seam import ScannedSteps
from vaelab.core.layers import Sampling


@keras.saving.register_keras_serializable(package="vaelab")
class VAEModel(ScannedSteps, keras.Model):
    """A functional model whose loss is reported term by term.

    ``loss = reconstruction_loss + kl_loss``. ``reconstruction_loss`` is the batch mean
    of the likelihood's per-example loss (``likelihood="gaussian"``: the lab's MSE, mean
    over pixels; ``"bernoulli"``: summed cross-entropy of logits), or of the loss given
    to ``compile(loss=...)`` when there is one (the lab's ``compile(loss="mse")``).
    ``kl_loss`` is the sum of the layer losses (the sampling layer's
    ``kl_weight · kl_scale · batch-mean KL``). All three are tracked as Keras tracks
    ``loss``, weighted by the batch size, so ``loss = reconstruction_loss + kl_loss``
    holds per epoch in ``History`` (a short last batch included). Without targets
    (``fit(x)``) the inputs are the targets.

    With ``objective="iwae:K"`` the loss is the importance-weighted bound of K samples per
    image instead (:mod:`vaelab.core.objectives`): the encoder, the sampling layer's noise and
    the decoder are run on the ``B·K`` rows here, and the history also records
    ``importance_gain`` and ``iwae_bound``, with ``loss = reconstruction_loss + kl_loss −
    importance_gain``. (Under JAX the model's own single-sample forward pass, unused
    then, is removed by the compiler.)

    Args:
        likelihood: ``"gaussian"`` or ``"bernoulli"`` (``vaelab.core.likelihoods``).
        objective: ``"elbo"`` (the lab's) or ``"iwae:K"``.
        *args, **kwargs: those of a functional ``keras.Model`` (inputs, outputs, name).
    """

    def __init__(self, *args, likelihood="gaussian", objective="elbo", **kwargs):
        super().__init__(*args, **kwargs)
        self.likelihood = likelihoods.get(likelihood)
        self.objective = objectives.parse(objective)
        self.reconstruction_tracker = keras.metrics.Mean(name="reconstruction_loss")
        self.kl_tracker = keras.metrics.Mean(name="kl_loss")
        sampling = self.parts()[1]
        self.layer_count = latents.layer_count(sampling)
        self.layer_kl_trackers = ([keras.metrics.Mean(name=f"kl_loss_{i}")
                                   for i in range(1, self.layer_count + 1)]
                                  if self.layer_count > 1 else [])
        if isinstance(self.objective, objectives.IWAE):
            self.gain_tracker = keras.metrics.Mean(name="importance_gain")
            self.bound_tracker = keras.metrics.Mean(name="iwae_bound")
            if not self.likelihood.kl_scale_sets_variance and sampling.kl_scale != 1:
                raise ValueError(f"the {objective} objective with the {self.likelihood.name} "
                                 f"likelihood needs kl_scale 1, received {sampling.kl_scale:g}")
            if sampling.free_bits:
                raise ValueError(f"the {objective} objective has no KL term for free bits "
                                 f"(free_bits={sampling.free_bits})")

    def get_config(self):
        return {**super().get_config(), "likelihood": self.likelihood.name,
                "objective": self.objective.name}

    def parts(self) -> tuple[keras.Model, Sampling, keras.Model]:
        """``(encoder, sampling, decoder)``, found by their roles (see :meth:`VAE.from_model`);
        a VampPrior's pseudo-inputs are a fourth part (:meth:`prior_components`)."""
        models = [layer for layer in self.layers if isinstance(layer, keras.Model)]
        samplers = [layer for layer in self.layers if isinstance(layer, Sampling)]
        if len(models) != 2 or len(samplers) != 1:
            raise ValueError(
                f"a vaelab VAE is a VAEModel of an encoder and a decoder sub-model joined by one "
                f"Sampling layer; {self.name!r} has {len(models)} sub-model(s) and "
                f"{len(samplers)} Sampling layer(s) (was it made by an older vaelab?)")
        return models[0], samplers[0], models[1]

    def pseudo_inputs(self) -> latents.PseudoInputs | None:
        """The VampPrior's pseudo-inputs layer, or ``None`` for a standard normal prior."""
        found = [layer for layer in self.layers if isinstance(layer, latents.PseudoInputs)]
        return found[0] if found else None

    def prior_components(self):
        """A VampPrior's ``(means, log_vars)``, each ``(K, L)``: the encoder at the
        pseudo-inputs; ``None`` for a standard normal prior."""
        pseudo = self.pseudo_inputs()
        if pseudo is None:
            return None
        mean, log_var = self.parts()[0](pseudo.values())
        return mean, log_var

    def reconstruction_loss(self, y, y_pred):
        """Batch mean of the per-example reconstruction loss: a scalar."""
        if self.loss is None:
            return ops.mean(self.likelihood.loss(y, y_pred))
        value = keras.losses.get(self.loss)(y, y_pred)
        return value if len(ops.shape(value)) == 0 else ops.mean(value)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        terms = self.loss_terms(x, y, y_pred, sample_weight, self.losses)
        batch = ops.shape(y_pred)[0]  # Keras weights its loss tracker by the batch size
        for name, tracker in self.term_trackers():
            tracker.update_state(terms[name], sample_weight=batch)
        return terms["loss"]

    def term_names(self) -> tuple[str, ...]:
        """The loss terms :meth:`loss_terms` reports besides ``loss`` (with several
        stochastic layers, ``kl_loss_1``, ``kl_loss_2``, … after ``kl_loss``)."""
        names = ("reconstruction_loss", "kl_loss",
                 *(tracker.name for tracker in self.layer_kl_trackers))
        if isinstance(self.objective, objectives.IWAE):
            return (*names, "importance_gain", "iwae_bound")
        return names

    def term_trackers(self) -> list[tuple[str, keras.metrics.Mean]]:
        trackers = [self.reconstruction_tracker, self.kl_tracker, *self.layer_kl_trackers]
        if isinstance(self.objective, objectives.IWAE):
            trackers += [self.gain_tracker, self.bound_tracker]
        return list(zip(self.term_names(), trackers))

    def loss_terms(self, x, y, y_pred, sample_weight, losses) -> dict:
        """``{"loss": …, "reconstruction_loss": …, "kl_loss": …}`` (and the IWAE terms),
        each a scalar, for one batch; ``losses`` are the layer losses of the forward pass
        that gave ``y_pred`` (the sampling layer's weighted KL). Updates no tracker: a
        population (:mod:`vaelab.training.population`) tracks each member's terms itself."""
        if y is None:  # fit(x) without targets: reconstruct the inputs (the images, not labels)
            y = x[0] if isinstance(x, (list, tuple)) else x
        if tuple(y.shape) != tuple(y_pred.shape):
            raise ValueError(
                f"targets and reconstructions must have the same shape, received "
                f"y={tuple(y.shape)} and y_pred={tuple(y_pred.shape)}")
        if isinstance(self.objective, objectives.IWAE):
            if sample_weight is not None:
                raise ValueError(f"the {self.objective.name} objective takes no sample weights")
            return self._iwae_loss(x, y)
        reconstruction = self.reconstruction_loss(y, y_pred)
        if losses:
            kl = ops.sum(ops.stack([ops.cast(l, "float32") for l in losses]))
        else:
            kl = ops.zeros((), dtype="float32")
        terms = {"loss": reconstruction + kl, "reconstruction_loss": reconstruction,
                 "kl_loss": kl}
        if self.layer_count > 1:  # the sampling layer adds one KL loss per layer, bottom-up
            if len(losses) != self.layer_count:
                raise ValueError(f"expected {self.layer_count} layer KL losses, received "
                                 f"{len(losses)}")
            for i, value in enumerate(losses, start=1):
                terms[f"kl_loss_{i}"] = ops.cast(value, "float32")
        return terms

    def _iwae_loss(self, x, y) -> dict:
        """The importance-weighted loss of ``objective.samples`` draws per image.

        The bound has no separate KL term: the sampling layer's ``kl_weight`` does not
        apply (``TrainConfig`` refuses KL schedules with it), nor do ``compile(loss=…)`` and
        sample weights (refused here).
        """
        if self.loss is not None:
            raise ValueError(f"the {self.objective.name} objective uses the likelihood's "
                             f"log-probability; compile the model without loss=")
        encoder, sampling, decoder = self.parts()
        label = x[1] if isinstance(x, (list, tuple)) else None
        mean, log_var = encoder(x)
        k = self.objective.samples
        width = latents.noise_width(sampling, ops.shape(mean)[1])
        eps = sampling.noise((ops.shape(mean)[0], k, width))                # (B, K, W)
        pixels = int(y.shape[-1])
        variance = self.likelihood.variance(pixels, sampling.kl_scale)
        log_w, log_px, ratios = objectives.log_weights(
            decoder, self.likelihood, variance, y, mean, log_var, eps, label, sampling,
            self.prior_components())
        terms = objectives.iwae_terms(log_w, log_px, ratios, sampling.kl_scale,
                                      self.likelihood.log_normalizer(pixels, variance))
        return terms


@dataclasses.dataclass(frozen=True)
class VAE:
    """A trainable VAE model and its parts (weights are shared).

    Attributes:
        model: ``x (batch, ...) -> x̂ (batch, D)``, the model to ``fit``.
        encoder: ``x -> [mean, log_var]``, each ``(batch, latent_dim)``.
        sampling: the :class:`~vaelab.core.layers.Sampling` layer (KL weight, KL scale, noise).
        decoder: ``z (batch, latent_dim) -> x̂``: means (Gaussian) or logits (Bernoulli).
    """

    model: VAEModel
    encoder: keras.Model
    sampling: Sampling
    decoder: keras.Model

    @property
    def likelihood(self):
        return self.model.likelihood

    @property
    def input_dim(self) -> int:
        """Pixels per image the model takes."""
        return int(self.encoder.inputs[0].shape[-1])

    @property
    def latent_dim(self) -> int:
        return int(self.decoder.inputs[0].shape[-1])

    @property
    def classes(self) -> int:
        """Classes of a conditional VAE's one-hot label; 0 for an unconditional one."""
        return int(self.encoder.inputs[1].shape[-1]) if len(self.encoder.inputs) == 2 else 0

    def start_output_at(self, pixel_means: np.ndarray) -> None:
        """Set the decoder output layer's bias (one per pixel) to the output that means
        ``pixel_means`` under the likelihood (their logits for the Bernoulli): before training
        the decoder then draws the average image whatever z is (Burda et al.'s start)."""
        layer = self.decoder.layers[-1]
        bias = getattr(layer, "bias", None)
        values = self.likelihood.decoded_for(pixel_means).reshape(-1)
        if bias is None or tuple(bias.shape) != values.shape:
            raise ValueError(f"the decoder's output layer {layer.name!r} has no bias of one "
                             f"value per pixel ({values.shape[0]})")
        bias.assign(values)

    def with_labels(self, x, labels):
        """The model input: ``x``, or ``[x, one-hot labels]`` for a conditional VAE."""
        if not self.classes:
            return x
        if labels is None:
            raise ValueError("a conditional VAE needs the labels of its images")
        return [x, one_hot(labels, self.classes)]

    def encode(self, x, batch_size: int = 1000, labels=None) -> tuple[np.ndarray, np.ndarray]:
        """Encoder means and log-variances of ``x``, each ``(n, latent_dim)``."""
        mean, log_var = predict(self.encoder, self.with_labels(x, labels), batch_size)
        return np.asarray(mean), np.asarray(log_var)

    def decode(self, z, batch_size: int = 1000, labels=None) -> np.ndarray:
        """The decoder's raw outputs (means or logits) for ``z (n, latent_dim)``: ``(n, D)``."""
        z = np.asarray(z, np.float32)
        return np.asarray(predict(self.decoder, self.with_labels(z, labels), batch_size))

    def prior_draws(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` draws of the decoder's input ``z₁ (n, latent_dim)`` from the model's prior,
        from ``rng``: ``N(0, I)`` (also under an IAF posterior); top-down through a hierarchy,
        ``z_L ~ N(0, I)``, then each ``z_i ~ p(z_i | z_{i+1})``; a VampPrior's component
        chosen uniformly, then its Gaussian."""
        if not isinstance(self.sampling, latents.LatentStack):
            return rng.standard_normal((n, self.latent_dim))
        eps = rng.standard_normal((n, self.sampling.noise_width())).astype(np.float32)
        prior = self.model.prior_components()
        choice = None if prior is None else rng.integers(self.sampling.components, size=n)
        return np.asarray(ops.convert_to_numpy(self.sampling.prior_draw(eps, prior, choice)),
                          np.float64)

    def to_pixels(self, decoded) -> np.ndarray:
        """Decoder outputs as images in [0, 1], as the likelihood defines them."""
        return self.likelihood.to_pixels(decoded)

    @classmethod
    def from_model(cls, model: keras.Model) -> "VAE":
        """The parts of a (possibly loaded) VAE model, found by their roles.

        The model's layers must be one encoder sub-model, one ``Sampling`` layer and one
        decoder sub-model, in that order (``keras.Model.layers`` lists them in graph order).
        """
        if not isinstance(model, VAEModel):
            raise ValueError(f"a vaelab VAE is a VAEModel, received {type(model).__name__} "
                             f"{model.name!r}")
        return cls(model, *model.parts())


def assemble(encoder: keras.Model, sampling: Sampling, decoder: keras.Model,
             likelihood: str = "gaussian", name: str = "vae", objective: str = "elbo") -> VAE:
    """Join ``encoder: x -> [mean, log_var]``, ``sampling`` and ``decoder: z -> x̂`` into a VAE.

    A conditional VAE's encoder takes ``[x, label]`` and its decoder ``[z, label]`` (a one-hot
    label); the model then takes ``[x, label]``.
    """
    x = keras.Input(shape=tuple(encoder.inputs[0].shape[1:]), name="x")
    if getattr(sampling, "components", 0):
        if len(encoder.inputs) == 2:
            raise ValueError("a VampPrior's pseudo-inputs have no labels: a conditional VAE "
                             "takes the standard normal prior")
        pseudo = latents.PseudoInputs(sampling.components, int(x.shape[-1]),
                                      name="pseudo_inputs")(x)
        mean, log_var = encoder(x)                      # (B, latent) each
        prior_mean, prior_log_var = encoder(pseudo)     # (K, latent) each
        x_hat = decoder(sampling([mean, log_var, prior_mean, prior_log_var]))
        return VAE.from_model(VAEModel(x, x_hat, likelihood=likelihood, objective=objective,
                                       name=name))
    if len(encoder.inputs) == 2:
        label = keras.Input(shape=tuple(encoder.inputs[1].shape[1:]), name="label")
        mean, log_var = encoder([x, label])             # (B, latent) each
        x_hat = decoder([sampling([mean, log_var]), label])
        inputs = [x, label]
    else:
        mean, log_var = encoder(x)                      # (B, latent) each
        x_hat = decoder(sampling([mean, log_var]))      # (B, D)
        inputs = x
    return VAE.from_model(VAEModel(inputs, x_hat, likelihood=likelihood, objective=objective,
                                   name=name))


def one_hot(labels, classes: int) -> np.ndarray:
    """Integer labels ``(n,)`` as float32 one-hot rows ``(n, classes)``; ``ValueError`` for a
    label outside ``0 … classes − 1``."""
    labels = np.asarray(labels).astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        raise ValueError(f"labels must lie in 0 … {classes - 1}, received "
                         f"{int(labels.min())} … {int(labels.max())}")
    return np.eye(classes, dtype=np.float32)[labels]


def compile_vae(vae: VAE, learning_rate=1e-3, epsilon=1e-7) -> VAE:
    """Compile with Adam (``epsilon``: its ε); the reconstruction loss is the model's likelihood's."""
    vae.model.compile(optimizer=keras.optimizers.Adam(learning_rate, epsilon=epsilon))
    return vae


def walk_layers(model: keras.Model):
    """Every layer of ``model``, nested models included (depth first, graph order)."""
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from walk_layers(layer)


def sampling_layers(model: keras.Model) -> list[Sampling]:
    """Every ``Sampling`` layer in ``model`` (nested models included)."""
    return [layer for layer in walk_layers(model) if isinstance(layer, Sampling)]


def device_count() -> int:
    """Devices the current Keras distribution spreads a batch over (1 without one)."""
    distribution = keras.distribution.distribution() if keras.backend.backend() == "jax" else None
    return 1 if distribution is None else int(np.size(distribution.device_mesh.devices))


def predict(model, x, batch_size: int = 1000):
    """``model.predict`` on rows padded to a multiple of :func:`device_count`, so every batch a
    distribution shards splits evenly over the devices; the padding is cut off again.

    ``x`` is one array or a list of arrays with the same number of rows (e.g. images and
    one-hot labels).
    """
    n = device_count()
    arrays = [np.asarray(a) for a in x] if isinstance(x, (list, tuple)) else [np.asarray(x)]
    rows = len(arrays[0])
    padded = -rows % n
    if padded:
        arrays = [np.concatenate([a, np.zeros((padded, *a.shape[1:]), a.dtype)]) for a in arrays]
    inputs = arrays if isinstance(x, (list, tuple)) else arrays[0]
    outputs = model.predict(inputs, batch_size=max(n, batch_size - batch_size % n), verbose=0)
    if isinstance(outputs, list):
        return [np.asarray(o)[:rows] for o in outputs]
    return np.asarray(outputs)[:rows]
