"""Closed-form KL divergences between Gaussians (keras.ops: any backend, NumPy in).

Derivations: ``docs/kl_derivation.md``. Per-example functions take
``(batch, latent)`` arrays and return ``(batch,)``, summed over the latent
axis; take the batch mean where the value is used.
"""

from __future__ import annotations

from keras import ops


def _same_shape(**arrays) -> None:
    shapes = {name: tuple(ops.shape(a)) for name, a in arrays.items()}
    if len(set(shapes.values())) > 1:
        listed = ", ".join(f"{name}{shape}" for name, shape in shapes.items())
        raise ValueError(f"KL inputs must have the same shape, received: {listed}")


def kl_normal(mean_q, std_q, mean_p, std_p):
    """KL(q || p) of two univariate normals, elementwise.

    ``q = N(mean_q, std_q²)``, ``p = N(mean_p, std_p²)``::

        KL = log(std_p / std_q) + (std_q² + (mean_q − mean_p)²) / (2 std_p²) − 1/2

    Inputs broadcast against each other; the result has the broadcast shape.
    (The lab's equation (1) divides by 2σ instead of 2σ²; this is the correct form.)
    """
    mean_q, std_q, mean_p, std_p = (ops.convert_to_tensor(a) for a in (mean_q, std_q, mean_p, std_p))
    return (ops.log(std_p / std_q)
            + (ops.square(std_q) + ops.square(mean_q - mean_p)) / (2.0 * ops.square(std_p))
            - 0.5)


def kl_standard_normal(mean, log_var):
    """KL(N(mean, diag(exp(log_var))) || N(0, I)) per example.

    ``KL = −½ Σᵢ (1 + log σᵢ² − σᵢ² − μᵢ²)``, summed over the last axis.

    Args:
        mean: ``(batch, latent)`` means μ.
        log_var: ``(batch, latent)`` log-variances log σ².

    Returns:
        ``(batch,)`` KL in nats.
    """
    _same_shape(mean=mean, log_var=log_var)
    mean, log_var = ops.convert_to_tensor(mean), ops.convert_to_tensor(log_var)
    return -0.5 * ops.sum(1.0 + log_var - ops.square(mean) - ops.exp(log_var), axis=-1)


def kl_standard_normal_elementwise(mean, log_var):
    """KL(N(μ, σ²) || N(0, 1)) of each coordinate: ``−½ (1 + log σ² − σ² − μ²)``, same shape.

    :func:`kl_standard_normal` is its sum over the last axis.
    """
    _same_shape(mean=mean, log_var=log_var)
    mean, log_var = ops.convert_to_tensor(mean), ops.convert_to_tensor(log_var)
    return -0.5 * (1.0 + log_var - ops.square(mean) - ops.exp(log_var))


def kl_diagonal_normals(mean_q, log_var_q, mean_p, log_var_p):
    """KL(q || p) of two diagonal Gaussians per example.

    ``KL = ½ Σᵢ (log σ²_p,i − log σ²_q,i + (σ²_q,i + (μ_q,i − μ_p,i)²) / σ²_p,i − 1)``,
    the sum over dimensions of :func:`kl_normal`.

    Args:
        mean_q, log_var_q, mean_p, log_var_p: ``(batch, latent)`` arrays.

    Returns:
        ``(batch,)`` KL in nats.
    """
    _same_shape(mean_q=mean_q, log_var_q=log_var_q, mean_p=mean_p, log_var_p=log_var_p)
    mean_q, log_var_q, mean_p, log_var_p = (
        ops.convert_to_tensor(a) for a in (mean_q, log_var_q, mean_p, log_var_p))
    return 0.5 * ops.sum(
        log_var_p - log_var_q
        + (ops.exp(log_var_q) + ops.square(mean_q - mean_p)) / ops.exp(log_var_p)
        - 1.0,
        axis=-1,
    )
