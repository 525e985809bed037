"""A yardstick, not part of vaelab: the lab's VAE trained as plain JAX, one epoch per ``lax.scan``.

Same model (784 → 512 relu → 32 mean / 32 log-variance → sample → 512 relu → 784),
same loss (per-pixel MSE + KL / 784, batch means), Adam (lr 1e-3, Keras' defaults
β₁ 0.9, β₂ 0.999, ε 1e-7) and the same batch order as the caller gives. There is no
Python in the loop: the whole epoch is one compiled call.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


def init(key, sizes=(784, 512, 32, 512)):
    """Glorot-normal kernels, zero biases."""
    d, h, z, _ = sizes
    return _glorot(key, {"enc": (d, h), "mean": (h, z), "log_var": (h, z), "dec": (z, h),
                         "out": (h, d)})


def _glorot(key, shapes):
    params = {}
    for (name, (fan_in, fan_out)), k in zip(shapes.items(), jax.random.split(key, len(shapes))):
        std = np.sqrt(2.0 / (fan_in + fan_out))
        params[name] = (jax.random.truncated_normal(k, -2, 2, (fan_in, fan_out)) * std / 0.8796,
                        jnp.zeros(fan_out))
    return params


def loss_fn(params, x, key, kl_scale):
    dense = lambda p, v: v @ p[0] + p[1]  # noqa: E731
    h = jax.nn.relu(dense(params["enc"], x))
    mean, log_var = dense(params["mean"], h), dense(params["log_var"], h)
    z = mean + jnp.exp(0.5 * log_var) * jax.random.normal(key, mean.shape)
    x_hat = dense(params["out"], jax.nn.relu(dense(params["dec"], z)))
    kl = -0.5 * jnp.sum(1 + log_var - mean**2 - jnp.exp(log_var), axis=-1)
    return jnp.mean((x_hat - x) ** 2) + kl_scale * jnp.mean(kl)


def adam_init(params):
    zeros = lambda: jax.tree_util.tree_map(jnp.zeros_like, params)  # noqa: E731
    return (zeros(), zeros(), jnp.zeros((), jnp.int32))


def _adam_scan(loss_fn, params, opt, batches, key, lr, b1, b2, eps, **loss_args):
    """One epoch as one ``lax.scan`` of Adam steps on ``loss_fn(params, x, key, **loss_args)``."""

    def step(carry, x):
        params, (m, v, t), key = carry
        key, sub = jax.random.split(key)
        loss, grads = jax.value_and_grad(loss_fn)(params, x, sub, **loss_args)
        t = t + 1
        m = jax.tree_util.tree_map(lambda m, g: b1 * m + (1 - b1) * g, m, grads)
        v = jax.tree_util.tree_map(lambda v, g: b2 * v + (1 - b2) * g * g, v, grads)
        alpha = lr * jnp.sqrt(1 - b2**t) / (1 - b1**t)
        params = jax.tree_util.tree_map(lambda p, m, v: p - alpha * m / (jnp.sqrt(v) + eps),
                                        params, m, v)
        return (params, (m, v, t), key), loss

    (params, opt, key), losses = jax.lax.scan(step, (params, opt, key), batches)
    return params, opt, jnp.mean(losses)


@functools.partial(jax.jit, static_argnames=("kl_scale",), donate_argnums=(0, 1))
def train_epoch(params, opt, batches, key, kl_scale=1 / 784, lr=1e-3, b1=0.9, b2=0.999, eps=1e-7):
    """``batches``: (steps, batch, 784) device array, already in the epoch's order."""
    return _adam_scan(loss_fn, params, opt, batches, key, lr, b1, b2, eps, kl_scale=kl_scale)


# ------------------------------------------------ the importance-weighted floor (Burda et al.)


def init_burda(key, sizes=(784, 200, 200, 50)):
    """Burda et al.'s one-stochastic-layer model: 784-200-200-(50 mean, 50 log-variance) and
    its mirror; Glorot-normal kernels, zero biases, as Keras initialises vaelab's layers."""
    d, h1, h2, z = sizes
    return _glorot(key, {"enc1": (d, h1), "enc2": (h1, h2), "mean": (h2, z), "log_var": (h2, z),
                         "dec1": (z, h2), "dec2": (h2, h1), "out": (h1, d)})


def iwae_loss_fn(params, x, key, k):
    """−log (1/k) Σ w, batch mean, for a Bernoulli decoder of logits: the decoder runs once
    on the (B·k) rows."""
    dense = lambda p, v: v @ p[0] + p[1]  # noqa: E731
    h = jnp.tanh(dense(params["enc2"], jnp.tanh(dense(params["enc1"], x))))
    mean, log_var = dense(params["mean"], h), dense(params["log_var"], h)
    eps = jax.random.normal(key, (x.shape[0], k, mean.shape[1]))
    z = mean[:, None] + jnp.exp(0.5 * log_var)[:, None] * eps                    # (B, k, L)
    rows = z.reshape(-1, z.shape[-1])
    logits = dense(params["out"], jnp.tanh(dense(params["dec2"], jnp.tanh(
        dense(params["dec1"], rows))))).reshape(x.shape[0], k, -1)              # (B, k, D)
    log_px = jnp.sum(x[:, None] * logits - jnp.logaddexp(0.0, logits), -1)
    log_pz = -0.5 * jnp.sum(jnp.log(2 * jnp.pi) + z**2, -1)
    log_qz = -0.5 * jnp.sum(jnp.log(2 * jnp.pi) + log_var[:, None] + eps**2, -1)
    log_w = log_px + log_pz - log_qz
    return -jnp.mean(jax.scipy.special.logsumexp(log_w, axis=1) - jnp.log(k))


@functools.partial(jax.jit, static_argnames=("k",), donate_argnums=(0, 1))
def train_epoch_iwae(params, opt, batches, key, k, lr=1e-3, b1=0.9, b2=0.999, eps=1e-4):
    """One epoch of IWAE-k training with Burda et al.'s Adam (ε 1e-4); ``batches``: (steps,
    batch, 784) binarized images in the epoch's order."""
    return _adam_scan(iwae_loss_fn, params, opt, batches, key, lr, b1, b2, eps, k=k)
