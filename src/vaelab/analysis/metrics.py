"""Diagnostics of a trained VAE, NumPy in and NumPy out.

Shapes: ``means`` and ``log_vars`` are ``(n, latent)`` encoder outputs;
images are ``(n, pixels)`` in [0, 1].
"""

from __future__ import annotations

import numpy as np

from vaelab.core.likelihoods import LOG_2PI

ACTIVE_THRESHOLD = 0.01  # Var_x(E[z_i | x]) above which a latent unit counts as active


def active_units(means: np.ndarray, threshold: float = ACTIVE_THRESHOLD) -> int:
    """Number of latent dimensions whose encoder mean varies over the data.

    A dimension ``i`` is active when ``Var_x(E_q[z_i | x]) > threshold``
    (Burda et al., 2015, "Importance Weighted Autoencoders", sec. 5.2).
    """
    return int(np.sum(active_dimensions(means, threshold)))


def active_dimensions(means: np.ndarray, threshold: float = ACTIVE_THRESHOLD) -> np.ndarray:
    """Per latent dimension, whether it is active (see :func:`active_units`): ``(latent,)`` bool."""
    means = np.asarray(means, dtype=np.float64)
    if means.ndim != 2:
        raise ValueError(f"expected means of shape (n, latent), received shape {means.shape}")
    return means.var(axis=0) > threshold


def principal_axes(points: np.ndarray, k: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """The mean ``(d,)`` of ``(n, d)`` points and their ``k`` leading principal axes ``(k, d)``
    (rows of zeros when ``d < k``)."""
    points = np.asarray(points, dtype=np.float64)
    center = points.mean(axis=0)
    _, _, vt = np.linalg.svd(points - center, full_matrices=False)
    components = vt[:k]
    if components.shape[0] < k:
        components = np.vstack([components, np.zeros((k - components.shape[0], points.shape[1]))])
    return center, components


def kl_elementwise(means: np.ndarray, log_vars: np.ndarray) -> np.ndarray:
    """KL(q(z_i | x) || N(0, 1)) per row and latent dimension: ``(n, latent)`` nats, float64.

    ``−½ (1 + log σ² − σ² − μ²)`` (the NumPy twin of ``divergences.kl_standard_normal``,
    kept in float64 for diagnostics).
    """
    means = np.asarray(means, dtype=np.float64)
    log_vars = np.asarray(log_vars, dtype=np.float64)
    if means.shape != log_vars.shape or means.ndim != 2:
        raise ValueError(f"expected means and log_vars of the same shape (n, latent), "
                         f"received {means.shape} and {log_vars.shape}")
    return -0.5 * (1.0 + log_vars - np.square(means) - np.exp(log_vars))


def kl_per_dimension(means: np.ndarray, log_vars: np.ndarray) -> np.ndarray:
    """KL(q(z_i | x) || N(0, 1)) per latent dimension, averaged over the data: ``(latent,)`` nats.

    The mean over the ``n`` rows of :func:`kl_elementwise`; summing the result gives
    the mean KL per example.
    """
    return np.mean(kl_elementwise(means, log_vars), axis=0)


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


def log_normal(z, mean, log_var):
    """Σ over the last axis of log N(z | mean, exp(log_var))."""
    return -0.5 * np.sum(LOG_2PI + log_var + np.square(z - mean) / np.exp(log_var), axis=-1)


def mutual_information(encoder, x: np.ndarray, seed: int = 0, batch_size: int = 1000) -> float:
    """Aggregate-posterior estimate of I(x; z) in nats (Hoffman & Johnson, 2016; He et al., 2019).

    ``I = E_x E_q(z|x)[log q(z|x)] − E_q(z)[log q(z)]`` with ``q(z) = 1/N Σₙ q(z | xₙ)``;
    one ``z`` is drawn per image, both terms are evaluated at it, and ``log q(z)`` is a
    log-mean-exp over all N images.
    Costs O(N²·latent); bounded above by log N. ``encoder`` maps x to [mean, log_var, …].
    """
    outputs = encoder.predict(x, batch_size=batch_size, verbose=0)  # x: images [, labels]
    mean, log_var = (np.asarray(a, np.float64) for a in outputs[:2])
    n, latent = mean.shape
    rng = np.random.default_rng(seed)
    z = mean + np.exp(0.5 * log_var) * rng.standard_normal(mean.shape)
    # log q(z_i | x_i) at the same draws as log q(z_i): their difference has a lower
    # variance than using the closed-form entropy, and is exactly 0 when q(z|x) ignores x.
    log_q_own = log_normal(z, mean, log_var)
    log_qz = np.empty(n)
    for start in range(0, n, batch_size):
        zb = z[start:start + batch_size, None, :]                       # (b, 1, L)
        pairwise = log_normal(zb, mean[None], log_var[None])           # (b, N)
        top = pairwise.max(axis=1)
        log_qz[start:start + batch_size] = top + np.log(np.exp(pairwise - top[:, None]).sum(1)) - np.log(n)
    return float(np.mean(log_q_own - log_qz))
