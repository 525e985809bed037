"""Diagnostics of a trained VAE, NumPy in and NumPy out.

Shapes: ``means`` and ``log_vars`` are ``(n, latent)`` encoder outputs;
images are ``(n, pixels)`` in [0, 1].
"""

from __future__ import annotations

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
