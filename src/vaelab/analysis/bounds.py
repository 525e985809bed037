"""Likelihood bounds of a trained VAE: the ELBO and the importance-weighted estimate of −log p(x).

A "vae" here is a :class:`vaelab.core.models.VAE` (its ``encode``, ``decode`` and labels
are the model's own); the likelihood is a :mod:`vaelab.core.likelihoods` object or its name.
"""

from __future__ import annotations

import concurrent.futures

import keras
import numpy as np
from keras import ops

from vaelab import signals
from vaelab.analysis.metrics import kl_elementwise
from vaelab.core import latents, likelihoods, objectives
from vaelab.core.models.vae import one_hot


def _likelihood(likelihood):
    return likelihoods.get(likelihood) if isinstance(likelihood, str) else likelihood


def log_likelihood(x: np.ndarray, decoded: np.ndarray, likelihood="gaussian",
                   variance: float = 0.5) -> np.ndarray:
    """log p(x | z) summed over pixels in float64 NumPy: ``x (..., D)``, ``decoded (..., D)`` -> ``(...)``."""
    return _likelihood(likelihood).log_prob(x, decoded, variance)


def _labels(vae, labels, rows: int):
    """The labels a conditional VAE needs, one per image (``None`` for an unconditional one)."""
    if not vae.classes:
        return None
    if labels is None or len(labels) != rows:
        raise ValueError("a conditional VAE needs one label per image")
    return np.asarray(labels)


def _encode(vae, x, batch_size: int, labels=None):
    """The encoder's means and log-variances in float64 (:meth:`VAE.encode`)."""
    mean, log_var = vae.encode(x, batch_size, labels=labels)
    return mean.astype(np.float64), log_var.astype(np.float64)


def noise_width(vae) -> int:
    """Standard normal draws one posterior sample of ``vae`` needs (every layer's)."""
    return latents.noise_width(vae.sampling, int(vae.encoder.outputs[0].shape[-1]))


MIXTURE_FLOATS = 2**25  # a VampPrior's (rows, K, L) differences per chunk: 128 MB


def _rows(vae, max_rows: int) -> int:
    """``max_rows``, or fewer for a VampPrior, whose density forms a (rows, K, L) array."""
    components = getattr(vae.sampling, "components", 0)
    if not components:
        return max_rows
    latent = int(vae.encoder.outputs[0].shape[-1])
    return max(1, min(max_rows, MIXTURE_FLOATS // (components * latent)))


def _mean_and_se(values: np.ndarray) -> tuple[float, float]:
    se = values.std(ddof=1) / np.sqrt(len(values)) if len(values) > 1 else float("nan")
    return float(values.mean()), float(se)


def elbo(vae, x: np.ndarray, likelihood="gaussian", variance: float = 0.5,
         samples: int = 1, seed: int = 0, batch_size: int = 500,
         labels=None) -> tuple[float, float]:
    """ELBO = E_q[log p(x|z)] − KL(q(z|x) || N(0, I)) in nats per image: ``(mean, standard error)``.

    The expectation uses ``samples`` draws per image, the KL its closed form. A conditional
    VAE needs ``labels`` (one per image). A richer latent model
    (:class:`~vaelab.core.latents.LatentStack`) has no closed-form KL: its ELBO is the mean
    log importance weight of the ``samples`` draws.
    """
    rng = np.random.default_rng(seed)
    labels = _labels(vae, labels, len(x))
    if isinstance(vae.sampling, latents.LatentStack):
        model = _log_weight_model(vae, likelihood, variance)
        per_image = []
        for start in range(0, len(x), batch_size):
            xb = np.asarray(x[start:start + batch_size], np.float64)
            lb = None if labels is None else labels[start:start + batch_size]
            chunks = list(iwae_log_weights_chunks(model, vae, xb, samples, rng,
                                                  _rows(vae, 10_000), lb))
            per_image.append(np.concatenate(chunks).mean(axis=0))
        return _mean_and_se(np.concatenate(per_image))
    per_image = []
    for start in range(0, len(x), batch_size):
        xb = np.asarray(x[start:start + batch_size], np.float64)
        lb = None if labels is None else labels[start:start + batch_size]
        mean, log_var = _encode(vae, xb, batch_size, lb)
        kl = kl_elementwise(mean, log_var).sum(-1)                               # (b,)
        expected = np.zeros(len(xb))
        for _ in range(samples):
            z = mean + np.exp(0.5 * log_var) * rng.standard_normal(mean.shape)
            decoded = vae.decode(z, batch_size=len(z), labels=lb).astype(np.float64)
            expected += log_likelihood(xb, decoded, likelihood, variance) / samples
        per_image.append(expected - kl)
    return _mean_and_se(np.concatenate(per_image))


def _linear_tail(decoder):
    """``(body layers, last layer)`` when ``decoder`` is a chain of layers ending in a linear
    one with a kernel (``x̂ = h W + b``), checked on a random probe; else ``None``."""
    layers = [l for l in decoder.layers if not isinstance(l, keras.layers.InputLayer)]
    last = layers[-1] if layers else None
    if (len(decoder.inputs) != 1 or getattr(last, "kernel", None) is None
            or getattr(last, "activation", None) not in (None, keras.activations.linear)):
        return None
    probe = np.random.default_rng(0).standard_normal((4, decoder.input_shape[-1])).astype(np.float32)
    h = probe
    for layer in layers:
        h = layer(h)
    if not np.allclose(ops.convert_to_numpy(h), ops.convert_to_numpy(decoder(probe)),
                       rtol=1e-5, atol=1e-6):
        return None
    return layers[:-1], last


def _log_weight_model(vae, likelihood, variance: float, expand_square: bool = True):
    """A compiled Keras model: ``[x (B, D), mean (B, L), log_var (B, L), eps (B, S, L)] -> (B, S)``.

    Each output is ``log p(x | z) + log p(z) − log q(z | x)`` at ``z = mean + σ·eps``; the
    images are not copied per draw. For the Gaussian likelihood with a decoder that ends
    in a linear layer ``x̂ = h W + b`` (and ``expand_square``), the squared error is
    expanded, ‖r − h W‖² = ‖r‖² − 2 h·(W r) + h·(W Wᵀ) h with ``r = x − b``, so that no
    draw needs the (H × D) output product: about two thirds of the work for the lab's
    decoder. ``W Wᵀ`` is computed when the model is built: build it again after the
    decoder's weights change. ``predict_on_batch`` runs it compiled on every backend.
    """
    likelihood = _likelihood(likelihood)
    # The expansion is the Gaussian's square; any other likelihood decodes every draw.
    expandable = likelihood.squared_error and expand_square
    tail = _linear_tail(vae.decoder) if expandable else None

    class LogWeights(keras.layers.Layer):
        def __init__(self):
            super().__init__(name="log_weights")
            self.decoder = vae.decoder
            self.body = tail[0] if tail else None
            self.last = tail[1] if tail else None
            if tail:  # W Wᵀ once: the model is built for one evaluation of fixed weights
                kernel = ops.convert_to_numpy(self.last.kernel).astype(np.float64)
                self.gram = self.add_weight(
                    shape=(kernel.shape[0],) * 2, trainable=False, name="gram",
                    initializer=keras.initializers.Constant((kernel @ kernel.T).astype(np.float32)))

        def call(self, x, mean, log_var, eps, label=None):
            prior = vae.model.prior_components()
            if self.last is None:
                return objectives.log_weights(self.decoder, likelihood, variance, x, mean,
                                              log_var, eps, label, vae.sampling, prior)[0]
            b, s = ops.shape(eps)[:2]
            z, layers = latents.transform(vae.sampling, ops.expand_dims(mean, 1),
                                          ops.expand_dims(log_var, 1), eps, prior)
            h = ops.reshape(z, (b * s, ops.shape(z)[-1]))                       # (B·S, L)
            for layer in self.body:
                h = layer(h)                                                    # (B·S, H)
            kernel = ops.convert_to_tensor(self.last.kernel)                    # (H, D)
            r = x if self.last.bias is None else x - self.last.bias             # (B, D)
            quadratic = ops.sum(h * ops.matmul(h, self.gram), -1)               # h·(W Wᵀ)h: (B·S,)
            w_r = ops.expand_dims(ops.matmul(r, ops.transpose(kernel)), 1)      # W r: (B, 1, H)
            cross = ops.sum(ops.reshape(h, (b, s, -1)) * w_r, -1)               # (B, S)
            square = (ops.expand_dims(ops.sum(ops.square(r), -1), 1) - 2 * cross
                      + ops.reshape(quadratic, (b, s)))                         # ‖r − hW‖²
            log_px = -0.5 * square / variance - likelihood.log_normalizer(d, variance)
            return log_px + objectives.sum_layers([log_p - log_q for log_p, log_q in layers])

        def compute_output_shape(self, x_shape, mean_shape, log_var_shape, eps_shape,
                                 label_shape=None):
            return tuple(eps_shape[:2])

    d = vae.decoder.outputs[0].shape[-1]
    latent = vae.encoder.outputs[0].shape[-1]
    inputs = [keras.Input((d,)), keras.Input((latent,)), keras.Input((latent,)),
              keras.Input((None, noise_width(vae)))]
    if vae.classes:
        inputs.append(keras.Input((vae.classes,)))
    return keras.Model(inputs, LogWeights()(*inputs))


def iwae_log_weights_chunks(model, vae, x, k, rng, max_rows, labels=None):
    """Yield ``log w`` arrays of shape ``(k_chunk, batch)``; the chunks add up to exactly ``k``.

    ``model`` is the :func:`_log_weight_model` of ``vae``. The noise of the next chunk is
    drawn on a second thread while the model runs (NumPy and XLA both release the GIL);
    the draws come from ``rng`` in the same order as without the thread.
    """
    mean, log_var = (a.astype(np.float32) for a in _encode(vae, x, len(x), labels))
    onehot = None if labels is None else one_hot(labels, vae.classes)
    x = x.astype(np.float32)
    per_chunk = max(1, max_rows // len(x))
    sizes = [min(per_chunk, k - done) for done in range(0, k, per_chunk)]

    width = noise_width(vae)

    def draw(size):
        return rng.standard_normal((len(x), size, width), dtype=np.float32)  # (B, size, W)

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        upcoming = pool.submit(draw, sizes[0])
        for i in range(len(sizes)):
            eps = upcoming.result()
            if i + 1 < len(sizes):
                upcoming = pool.submit(draw, sizes[i + 1])
            inputs = [x, mean, log_var, eps] + ([] if onehot is None else [onehot])
            log_w = model.predict_on_batch(inputs)                                  # (B, size)
            yield np.asarray(log_w, np.float64).T


def iwae_nll(vae, x: np.ndarray, k: int, likelihood="gaussian", variance: float = 0.5,
             seed: int = 0, batch_size: int = 100, max_rows: int = 10_000,
             progress=None, labels=None) -> tuple[float, float, int]:
    """Importance-weighted estimate of −log p(x) (Burda et al., 2015, eq. 8), nats per image.

    ``−log (1/k Σⱼ p(x, zⱼ) / q(zⱼ|x))`` with exactly ``k`` samples ``zⱼ ~ q(z|x)`` per
    image, computed in chunks of at most ``max_rows`` decoder rows with a running
    log-sum-exp. Returns ``(mean, standard error over images, samples used per image)``.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, received {k!r}")
    rng = np.random.default_rng(seed)
    model = _log_weight_model(vae, likelihood, variance)
    labels = _labels(vae, labels, len(x))
    nll, counted = [], []
    for start in range(0, len(x), batch_size):
        xb = np.asarray(x[start:start + batch_size], np.float64)
        lb = None if labels is None else labels[start:start + batch_size]
        running_max = np.full(len(xb), -np.inf)
        running_sum = np.zeros(len(xb))
        used = 0
        for log_w in iwae_log_weights_chunks(model, vae, xb, k, rng, _rows(vae, max_rows), lb):
            new_max = np.maximum(running_max, log_w.max(axis=0))
            running_sum = (running_sum * np.exp(running_max - new_max)
                           + np.exp(log_w - new_max).sum(axis=0))
            running_max = new_max
            used += log_w.shape[0]
        nll.append(-(running_max + np.log(running_sum) - np.log(used)))
        counted.append(used)
        signals.check()  # a long estimate ends on a Ctrl-C even if its raise was lost
        if progress is not None:
            progress(start + len(xb))
    if set(counted) != {k}:
        raise AssertionError(f"IWAE used {sorted(set(counted))} samples per image, asked for {k}")
    mean, se = _mean_and_se(np.concatenate(nll))
    return mean, se, k


