"""Diagnostics of a trained VAE, NumPy in and NumPy out.

Shapes: ``means`` and ``log_vars`` are ``(n, latent)`` encoder outputs;
images are ``(n, pixels)`` in [0, 1].
"""

from __future__ import annotations

import concurrent.futures

import numpy as np


def active_units(means: np.ndarray, threshold: float = 0.01) -> int:
    """Number of latent dimensions whose encoder mean varies over the data.

    A dimension ``i`` is active when ``Var_x(E_q[z_i | x]) > threshold``
    (Burda et al., 2015, "Importance Weighted Autoencoders", sec. 5.2).
    """
    means = np.asarray(means, dtype=np.float64)
    if means.ndim != 2:
        raise ValueError(f"expected means of shape (n, latent), received shape {means.shape}")
    return int(np.sum(means.var(axis=0) > threshold))


def kl_per_dimension(means: np.ndarray, log_vars: np.ndarray) -> np.ndarray:
    """KL(q(z_i | x) || N(0, 1)) per latent dimension, averaged over the data: ``(latent,)`` nats.

    ``−½ (1 + log σ² − σ² − μ²)``, mean over the ``n`` rows; summing the result
    gives the mean KL per example.
    """
    means = np.asarray(means, dtype=np.float64)
    log_vars = np.asarray(log_vars, dtype=np.float64)
    if means.shape != log_vars.shape or means.ndim != 2:
        raise ValueError(f"expected means and log_vars of the same shape (n, latent), "
                         f"received {means.shape} and {log_vars.shape}")
    return np.mean(-0.5 * (1.0 + log_vars - np.square(means) - np.exp(log_vars)), axis=0)


def output_std(reconstructions: np.ndarray) -> float:
    """Mean over pixels of the std across images of the reconstructions.

    0 means every input gives the same picture (the collapsed "gray blob").
    """
    reconstructions = np.asarray(reconstructions, dtype=np.float64)
    if reconstructions.ndim != 2:
        raise ValueError(f"expected reconstructions of shape (n, pixels), "
                         f"received shape {reconstructions.shape}")
    return float(reconstructions.std(axis=0).mean())


def is_collapsed(n_active: int, std: float, std_threshold: float = 0.01) -> bool:
    """The run's verdict: no active latent unit, or (almost) the same output for every input."""
    return n_active == 0 or std < std_threshold


# --------------------------------------------------------------------------
# Likelihoods and bounds. A "vae" here is anything with ``.encoder`` (x ->
# [mean, log_var, z]) and ``.decoder`` (z -> mean or logits), e.g. vaelab.VAE.

LOG_2PI = float(np.log(2 * np.pi))


def log_likelihood(x: np.ndarray, decoded: np.ndarray, likelihood: str = "gaussian",
                   variance: float = 0.5) -> np.ndarray:
    """log p(x | z) summed over pixels: ``x (..., D)``, ``decoded (..., D)`` -> ``(...)``.

    ``gaussian``: N(x | decoded, variance · I); ``bernoulli``: ``decoded`` are logits,
    ``Σ x·l − softplus(l)``.
    """
    if likelihood == "gaussian":
        return -0.5 * np.sum(np.square(x - decoded) / variance + np.log(2 * np.pi * variance), axis=-1)
    if likelihood == "bernoulli":
        return np.sum(x * decoded - np.logaddexp(0.0, decoded), axis=-1)
    raise ValueError(f"likelihood must be 'gaussian' or 'bernoulli', received {likelihood!r}")


def _log_normal(z, mean, log_var):
    """Σ over the last axis of log N(z | mean, exp(log_var))."""
    return -0.5 * np.sum(LOG_2PI + log_var + np.square(z - mean) / np.exp(log_var), axis=-1)


def _encode(vae, x, batch_size):
    mean, log_var, _ = vae.encoder.predict(x, batch_size=batch_size, verbose=0)
    return np.asarray(mean, np.float64), np.asarray(log_var, np.float64)


def _decode(vae, z):
    return np.asarray(vae.decoder.predict(z.astype(np.float32), batch_size=len(z), verbose=0),
                      np.float64)


def _mean_and_se(values: np.ndarray) -> tuple[float, float]:
    se = values.std(ddof=1) / np.sqrt(len(values)) if len(values) > 1 else float("nan")
    return float(values.mean()), float(se)


def elbo(vae, x: np.ndarray, likelihood: str = "gaussian", variance: float = 0.5,
         samples: int = 1, seed: int = 0, batch_size: int = 500) -> tuple[float, float]:
    """ELBO = E_q[log p(x|z)] − KL(q(z|x) || N(0, I)) in nats per image: ``(mean, standard error)``.

    The expectation uses ``samples`` draws per image, the KL its closed form.
    """
    rng = np.random.default_rng(seed)
    per_image = []
    for start in range(0, len(x), batch_size):
        xb = np.asarray(x[start:start + batch_size], np.float64)
        mean, log_var = _encode(vae, xb, batch_size)
        kl = -0.5 * np.sum(1 + log_var - np.square(mean) - np.exp(log_var), axis=-1)
        expected = np.zeros(len(xb))
        for _ in range(samples):
            z = mean + np.exp(0.5 * log_var) * rng.standard_normal(mean.shape)
            expected += log_likelihood(xb, _decode(vae, z), likelihood, variance) / samples
        per_image.append(expected - kl)
    return _mean_and_se(np.concatenate(per_image))


def _linear_tail(decoder):
    """``(body layers, last layer)`` when ``decoder`` is a chain of layers ending in a linear
    one with a kernel (``x̂ = h W + b``), checked on a random probe; else ``None``."""
    import keras
    from keras import ops

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


def _log_weight_model(vae, likelihood: str, variance: float, expand_square: bool = True):
    """A compiled Keras model: ``[x (B, D), mean (B, L), log_var (B, L), eps (B, S, L)] -> (B, S)``.

    Each output is ``log p(x | z) + log p(z) − log q(z | x)`` at ``z = mean + σ·eps``; the
    images are not copied per draw. For the Gaussian likelihood with a decoder that ends
    in a linear layer ``x̂ = h W + b`` (and ``expand_square``), the squared error is
    expanded, ‖r − h W‖² = ‖r‖² − 2 h·(W r) + h·(W Wᵀ) h with ``r = x − b``, so that no
    draw needs the (H × D) output product: about two thirds of the work for the lab's
    decoder. ``W Wᵀ`` is computed when the model is built: build it again after the
    decoder's weights change. ``predict_on_batch`` runs it compiled on every backend.
    """
    import keras
    from keras import ops

    if likelihood not in ("gaussian", "bernoulli"):
        raise ValueError(f"likelihood must be 'gaussian' or 'bernoulli', received {likelihood!r}")
    tail = _linear_tail(vae.decoder) if likelihood == "gaussian" and expand_square else None

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

        def call(self, x, mean, log_var, eps):
            b, s, latent = ops.shape(eps)
            z = ops.expand_dims(mean, 1) + ops.exp(0.5 * ops.expand_dims(log_var, 1)) * eps
            rows = ops.reshape(z, (b * s, latent))                          # (B·S, L)
            if self.last is None:
                decoded = ops.reshape(self.decoder(rows), (b, s, -1))      # (B, S, D)
                x3 = ops.expand_dims(x, 1)
                if likelihood == "bernoulli":
                    log_px = ops.sum(x3 * decoded - ops.softplus(decoded), -1)
                else:
                    log_px = -0.5 * ops.sum(ops.square(x3 - decoded) / variance, -1)
            else:
                h = rows
                for layer in self.body:
                    h = layer(h)                                            # (B·S, H)
                kernel = ops.convert_to_tensor(self.last.kernel)            # (H, D)
                r = x if self.last.bias is None else x - self.last.bias     # (B, D)
                quadratic = ops.sum(h * ops.matmul(h, self.gram), -1)       # h·(W Wᵀ)h: (B·S,)
                w_r = ops.expand_dims(ops.matmul(r, ops.transpose(kernel)), 1)  # W r: (B, 1, H)
                cross = ops.sum(ops.reshape(h, (b, s, -1)) * w_r, -1)       # (B, S)
                square = (ops.expand_dims(ops.sum(ops.square(r), -1), 1) - 2 * cross
                          + ops.reshape(quadratic, (b, s)))                 # ‖r − hW‖²
                log_px = -0.5 * square / variance
            if likelihood == "gaussian":
                log_px = log_px - 0.5 * ops.shape(x)[-1] * np.log(2 * np.pi * variance)
            log_pz = -0.5 * ops.sum(LOG_2PI + ops.square(z), -1)
            log_qz = -0.5 * ops.sum(LOG_2PI + ops.expand_dims(log_var, 1) + ops.square(eps), -1)
            return log_px + log_pz - log_qz

        def compute_output_shape(self, x_shape, mean_shape, log_var_shape, eps_shape):
            return tuple(eps_shape[:2])

    d = vae.decoder.output_shape[-1]
    latent = vae.decoder.input_shape[-1]
    inputs = [keras.Input((d,)), keras.Input((latent,)), keras.Input((latent,)),
              keras.Input((None, latent))]
    return keras.Model(inputs, LogWeights()(*inputs))


def iwae_log_weights_chunks(model, vae, x, k, rng, max_rows):
    """Yield ``log w`` arrays of shape ``(k_chunk, batch)``; the chunks add up to exactly ``k``.

    ``model`` is the :func:`_log_weight_model` of ``vae``. The noise of the next chunk is
    drawn on a second thread while the model runs (NumPy and XLA both release the GIL);
    the draws come from ``rng`` in the same order as without the thread.
    """
    mean, log_var = (a.astype(np.float32) for a in _encode(vae, x, len(x)))
    x = x.astype(np.float32)
    per_chunk = max(1, max_rows // len(x))
    sizes = [min(per_chunk, k - done) for done in range(0, k, per_chunk)]

    def draw(size):
        return rng.standard_normal((len(x), size, mean.shape[1]), dtype=np.float32)  # (B, size, L)

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        upcoming = pool.submit(draw, sizes[0])
        for i in range(len(sizes)):
            eps = upcoming.result()
            if i + 1 < len(sizes):
                upcoming = pool.submit(draw, sizes[i + 1])
            log_w = model.predict_on_batch([x, mean, log_var, eps])                  # (B, size)
            yield np.asarray(log_w, np.float64).T


def iwae_nll(vae, x: np.ndarray, k: int, likelihood: str = "gaussian", variance: float = 0.5,
             seed: int = 0, batch_size: int = 100, max_rows: int = 10_000,
             progress=None) -> tuple[float, float, int]:
    """Importance-weighted estimate of −log p(x) (Burda et al., 2015, eq. 8), nats per image.

    ``−log (1/k Σⱼ p(x, zⱼ) / q(zⱼ|x))`` with exactly ``k`` samples ``zⱼ ~ q(z|x)`` per
    image, computed in chunks of at most ``max_rows`` decoder rows with a running
    log-sum-exp. Returns ``(mean, standard error over images, samples used per image)``.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, received {k!r}")
    rng = np.random.default_rng(seed)
    model = _log_weight_model(vae, likelihood, variance)
    nll, counted = [], []
    for start in range(0, len(x), batch_size):
        xb = np.asarray(x[start:start + batch_size], np.float64)
        running_max = np.full(len(xb), -np.inf)
        running_sum = np.zeros(len(xb))
        used = 0
        for log_w in iwae_log_weights_chunks(model, vae, xb, k, rng, max_rows):
            new_max = np.maximum(running_max, log_w.max(axis=0))
            running_sum = (running_sum * np.exp(running_max - new_max)
                           + np.exp(log_w - new_max).sum(axis=0))
            running_max = new_max
            used += log_w.shape[0]
        nll.append(-(running_max + np.log(running_sum) - np.log(used)))
        counted.append(used)
        if progress is not None:
            progress(start + len(xb))
    if set(counted) != {k}:
        raise AssertionError(f"IWAE used {sorted(set(counted))} samples per image, asked for {k}")
    mean, se = _mean_and_se(np.concatenate(nll))
    return mean, se, k


def mutual_information(encoder, x: np.ndarray, seed: int = 0, batch_size: int = 1000) -> float:
    """Aggregate-posterior estimate of I(x; z) in nats (Hoffman & Johnson, 2016; He et al., 2019).

    ``I = E_x E_q(z|x)[log q(z|x)] − E_q(z)[log q(z)]`` with ``q(z) = 1/N Σₙ q(z | xₙ)``;
    one ``z`` is drawn per image, both terms are evaluated at it, and ``log q(z)`` is a
    log-mean-exp over all N images.
    Costs O(N²·latent); bounded above by log N. ``encoder`` maps x to [mean, log_var, …].
    """
    outputs = encoder.predict(x, batch_size=batch_size, verbose=0)
    mean, log_var = (np.asarray(a, np.float64) for a in outputs[:2])
    n, latent = mean.shape
    rng = np.random.default_rng(seed)
    z = mean + np.exp(0.5 * log_var) * rng.standard_normal(mean.shape)
    # log q(z_i | x_i) at the same draws as log q(z_i): their difference has a lower
    # variance than using the closed-form entropy, and is exactly 0 when q(z|x) ignores x.
    log_q_own = _log_normal(z, mean, log_var)
    log_qz = np.empty(n)
    for start in range(0, n, batch_size):
        zb = z[start:start + batch_size, None, :]                       # (b, 1, L)
        pairwise = _log_normal(zb, mean[None], log_var[None])           # (b, N)
        top = pairwise.max(axis=1)
        log_qz[start:start + batch_size] = top + np.log(np.exp(pairwise - top[:, None]).sum(1)) - np.log(n)
    return float(np.mean(log_q_own - log_qz))
