"""Per-layer statistics of a richer latent model (:class:`~vaelab.core.latents.LatentStack`).

For each stochastic layer ``i``, over the images ``x``:

- the posterior mean ``E_q[z_i | x]``: the encoder's mean for a Gaussian first layer; for an
  upper layer of a hierarchy the average over ``samples`` draws of the layer below of its
  posterior mean ``μ_i(z_{i−1})`` (no noise of the layer's own); after a flow the average
  of ``samples`` draws of ``z_T``;
- active units (Burda et al.): dimensions whose ``Var_x(E_q[z_i | x])`` exceeds 0.01, the
  variance of the ``samples``-draw averages less their own Monte Carlo variance (the mean
  over images of ``Var_s / samples``: 0.01 for a collapsed unit after a flow at 100 draws,
  the threshold itself);
- the KL, ``E_q[log q_i − log p_i]`` in nats per image, by the ``samples`` draws (every
  layer's, so that they add up to the model's KL), and per dimension where the layer is
  factorized (no flow, no mixture prior).
"""

from __future__ import annotations

import numpy as np
from keras import ops

from vaelab.analysis import metrics


def _np(value) -> np.ndarray:
    return np.asarray(ops.convert_to_numpy(value), np.float64)


def layer_statistics(vae, x: np.ndarray, samples: int = 100, seed: int = 0,
                     batch_size: int = 100, labels=None,
                     threshold: float = metrics.ACTIVE_THRESHOLD) -> list[dict]:
    """One dict per stochastic layer, bottom-up: ``latent``, ``means`` ``(n, L_i)``,
    ``active_units``, ``kl`` and ``kl_per_dimension`` (a list, or ``None``)."""
    sampling = vae.sampling
    rng = np.random.default_rng(seed)
    prior = vae.model.prior_components()
    width = sampling.noise_width()
    means_out, kl_sums, kl_dims = None, None, None
    for start in range(0, len(x), batch_size):
        xb = x[start:start + batch_size]
        lb = None if labels is None else labels[start:start + batch_size]
        mean, log_var = vae.encode(xb, batch_size=len(xb), labels=lb)
        eps = rng.standard_normal((len(xb), samples, width), dtype=np.float32)
        layers = sampling.draw_layers(ops.expand_dims(mean, 1), ops.expand_dims(log_var, 1),
                                      eps, prior)
        if means_out is None:
            means_out = [[] for _ in layers]
            noise = [0.0 for _ in layers]
            kl_sums = [0.0 for _ in layers]
            kl_dims = [0.0 if "log_p_d" in layer and "log_q_d" in layer else None
                       for layer in layers]
        for i, layer in enumerate(layers):
            if i == 0 and not sampling.flow_steps:
                means_out[i].append(np.asarray(mean, np.float64))
            else:
                key = "mean" if "mean" in layer else "z"
                draws = _np(layer[key])                                  # (b, samples, L_i)
                means_out[i].append(draws.mean(axis=1))
                # The average of S draws varies by Var_s/S around E_q: summed here, taken
                # off the variance over images below.
                noise[i] = noise[i] + (draws.var(axis=1, ddof=1) / samples).sum(axis=0)
            ratio = _np(layer["log_q"]) - _np(layer["log_p"])
            kl_sums[i] += ratio.mean(axis=1).sum()
            if kl_dims[i] is not None:
                per_dim = _np(layer["log_q_d"]) - _np(layer["log_p_d"])
                kl_dims[i] = kl_dims[i] + per_dim.mean(axis=1).sum(axis=0)
    result = []
    for i in range(len(means_out)):
        means = np.concatenate(means_out[i])
        spread = means.var(axis=0) - np.asarray(noise[i]) / len(x)
        result.append({
            "latent": int(means.shape[1]),
            "means": means,
            "active_units": int(np.sum(spread > threshold)),
            "kl": float(kl_sums[i] / len(x)),
            "kl_per_dimension": (None if kl_dims[i] is None
                                 else [float(v) for v in kl_dims[i] / len(x)]),
        })
    return result
