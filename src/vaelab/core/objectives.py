"""Training objectives: what a VAE's loss estimates (``keras.ops``: every backend).

- ``elbo`` (the lab's): the reconstruction loss of one sample z ~ q(z|x) plus the KL in
  closed form times the KL scale (``VAEModel``'s default path; the sampling layer adds the
  KL term, with free bits if asked).
- ``iwae:K`` (Burda et al. 2015, eq. 8): K samples z_k ~ q(z|x) per image and the bound
  ``L_K = log (1/K) Σ_k w_k`` with ``w_k = p(x|z_k) p(z_k) / q(z_k|x)``, computed by a
  log-sum-exp; the decoder runs once on the ``B·K`` rows. ``iwae:1`` is the ELBO with its
  KL estimated by the same sample (equal to the closed-form KL in expectation, value and
  gradient).

Scale: the loss is ``s · (−L_K − log Z)`` with ``s`` the KL scale and ``log Z`` the
likelihood's normalising constant (0 for Bernoulli), so that for K = 1 it reads like the
ELBO objective: Gaussian ``MSE + s·KL̂`` (the lab's scale, σ² = D·s/2), Bernoulli
``BCE + KL̂`` in nats. The parts the history records, each a batch mean:

- ``reconstruction_loss``: ``s · (−log p(x|z_k) − log Z)`` averaged over the K samples
  (the Gaussian: MSE; the Bernoulli: summed cross-entropy);
- ``kl_loss``: ``s · (log q(z_k|x) − log p(z_k))`` averaged over the K samples;
- ``importance_gain``: ``s · (L_K − mean_k log w_k) ≥ 0``, what the K samples gain over
  their average ELBO, so ``loss = reconstruction_loss + kl_loss − importance_gain``;
- ``iwae_bound``: ``L_K`` itself, nats per image (a lower bound on log p(x)).
"""

from __future__ import annotations

import math

from keras import ops

from vaelab.core import latents


class ELBO:
    """The evidence lower bound with the KL in closed form: one sample per image."""

    name = "elbo"
    samples = 1

    def __str__(self) -> str:
        return self.name


class IWAE:
    """The importance-weighted bound of ``samples`` draws per image."""

    def __init__(self, samples: int):
        self.samples = samples
        self.name = f"iwae:{samples}"

    def __str__(self) -> str:
        return self.name


def parse(text) -> ELBO | IWAE:
    """``"elbo"`` or ``"iwae:K"`` (K ≥ 1) → an objective; ``ValueError`` naming the forms."""
    if isinstance(text, (ELBO, IWAE)):
        return text
    expected = f"--objective must be elbo or iwae:K with K a positive integer, received {text!r}"
    if text == "elbo":
        return ELBO()
    kind, _, k = text.partition(":") if isinstance(text, str) else ("", "", "")
    if (kind != "iwae" or not (k.isascii() and k.isdecimal()) or int(k) < 1
            or k != str(int(k))):
        raise ValueError(expected)
    return IWAE(int(k))


def log_weights(decode, likelihood, variance, x, mean, log_var, eps, label=None,
                sampling=None, prior=None):
    """``log w = log p(x|z) + log p(z) − log q(z|x)`` for each draw: ``(B, K)``, and its parts.

    Args:
        decode: ``rows -> decoded (B·K, D)``; rows are ``z (B·K, L)``, or ``[z, label]``.
        likelihood: a :mod:`vaelab.core.likelihoods` object; ``variance``: its σ² (Gaussian).
        x: ``(B, D)`` images; ``mean``, ``log_var``: ``(B, L)``; ``eps``: ``(B, K, W)``, W the
            sampling layer's noise width (L for the lab's one Gaussian layer).
        label: ``(B, C)`` one-hot labels of a conditional VAE, repeated for each draw.
        sampling: the model's sampling layer (``None``: the lab's one standard Gaussian layer);
            a :class:`~vaelab.core.latents.LatentStack` adds its layers, flow or prior.
        prior: a VampPrior's ``(means, log_vars)`` of its components.

    Returns:
        ``(log_w, log_px, ratios)``: ``(B, K)`` each, ``ratios`` a list of ``log p_i − log q_i``
        per stochastic layer, bottom-up.
    """
    b, k = ops.shape(eps)[:2]
    z, layers = latents.transform(sampling, ops.expand_dims(mean, 1),
                                  ops.expand_dims(log_var, 1), eps, prior)   # (B, K, L)
    rows = ops.reshape(z, (b * k, ops.shape(z)[-1]))
    if label is not None:
        rows = [rows, ops.repeat(label, k, axis=0)]                     # (B·K, C)
    decoded = ops.reshape(decode(rows), (b, k, -1))                     # (B, K, D)
    log_px = likelihood.log_prob(ops.expand_dims(x, 1), decoded, variance, xp=ops)
    ratios = [log_p - log_q for log_p, log_q in layers]
    return log_px + sum_layers(ratios), log_px, ratios


def sum_layers(ratios):
    """The sum of the per-layer terms (one array each)."""
    total = ratios[0]
    for ratio in ratios[1:]:
        total = total + ratio
    return total


def iwae_terms(log_w, log_px, ratios, scale: float, log_normalizer: float) -> dict:
    """The IWAE loss and its parts (see the module docstring) from ``(B, K)`` log-weights;
    ``ratios``: ``log p_i − log q_i`` per stochastic layer. With more than one layer the KL
    of layer ``i`` is also reported, as ``kl_loss_i``."""
    k = ops.shape(log_w)[1]
    bound = ops.mean(ops.logsumexp(log_w, axis=1) - math.log(k))      # L_K, batch mean
    average = ops.mean(log_w)                                           # mean_k log w_k
    terms = {
        "loss": scale * (-bound - log_normalizer),
        "reconstruction_loss": scale * (-ops.mean(log_px) - log_normalizer),
        "kl_loss": scale * -ops.mean(sum_layers(ratios)),
        "importance_gain": scale * (bound - average),
        "iwae_bound": bound,
    }
    if len(ratios) > 1:
        for i, ratio in enumerate(ratios, start=1):
            terms[f"kl_loss_{i}"] = scale * -ops.mean(ratio)
    return terms
