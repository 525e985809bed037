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


def _adam_scan(loss_fn, params, opt, batches, key, lr, b1, b2, eps, unroll=1, **loss_args):
    """One epoch as one ``lax.scan`` of Adam steps on ``loss_fn(params, x, key, **loss_args)``
    (``unroll`` steps per loop iteration; all of them: no loop)."""

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

    (params, opt, key), losses = jax.lax.scan(step, (params, opt, key), batches, unroll=unroll)
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


# ------------------------------------------------ Burda et al.'s two stochastic layers


def init_two_layer(key, sizes=(784, 200, 100, 100, 50)):
    """Burda et al.'s two-layer model (``--latent-dim 100,50 --hidden 200,200/100,100``):
    784-200-200-(100, 100), z₁ 100-100-(50, 50) for q(z₂|z₁), z₂ 100-100-(100, 100) for
    p(z₁|z₂), z₁ 200-200-784 for p(x|z₁); Glorot-normal kernels, zero biases."""
    d, h1, z1, h2, z2 = sizes
    return _glorot(key, {
        "enc1": (d, h1), "enc2": (h1, h1), "mean1": (h1, z1), "log_var1": (h1, z1),
        "q2_1": (z1, h2), "q2_2": (h2, h2), "mean2": (h2, z2), "log_var2": (h2, z2),
        "p1_1": (z2, h2), "p1_2": (h2, h2), "p1_mean": (h2, z1), "p1_log_var": (h2, z1),
        "dec1": (z1, h1), "dec2": (h1, h1), "out": (h1, d)})


def two_layer_loss_fn(params, x, key):
    """The negative ELBO, batch mean, as vaelab computes it for two layers: layer 1's KL by
    its one-sample estimate log q(z₁|x) − log p(z₁|z₂), the top layer's in closed form."""
    dense = lambda name, v: v @ params[name][0] + params[name][1]  # noqa: E731
    log_2pi = jnp.log(2 * jnp.pi)
    h = jnp.tanh(dense("enc2", jnp.tanh(dense("enc1", x))))
    mean1, log_var1 = dense("mean1", h), dense("log_var1", h)
    eps = jax.random.normal(key, (x.shape[0], mean1.shape[1] + params["mean2"][1].shape[0]))
    eps1, eps2 = eps[:, :mean1.shape[1]], eps[:, mean1.shape[1]:]
    z1 = mean1 + jnp.exp(0.5 * log_var1) * eps1
    g = jnp.tanh(dense("q2_2", jnp.tanh(dense("q2_1", z1))))
    mean2, log_var2 = dense("mean2", g), dense("log_var2", g)
    z2 = mean2 + jnp.exp(0.5 * log_var2) * eps2
    f = jnp.tanh(dense("p1_2", jnp.tanh(dense("p1_1", z2))))
    p_mean, p_log_var = dense("p1_mean", f), dense("p1_log_var", f)
    logits = dense("out", jnp.tanh(dense("dec2", jnp.tanh(dense("dec1", z1)))))
    reconstruction = -jnp.sum(x * logits - jnp.logaddexp(0.0, logits), -1)
    log_q1 = -0.5 * jnp.sum(log_2pi + log_var1 + eps1**2, -1)
    log_p1 = -0.5 * jnp.sum(log_2pi + p_log_var + (z1 - p_mean)**2 * jnp.exp(-p_log_var), -1)
    kl2 = -0.5 * jnp.sum(1 + log_var2 - mean2**2 - jnp.exp(log_var2), -1)
    return jnp.mean(reconstruction) + jnp.mean(log_q1 - log_p1) + jnp.mean(kl2)


@functools.partial(jax.jit, donate_argnums=(0, 1))
def train_epoch_two_layer(params, opt, batches, key, lr=1e-3, b1=0.9, b2=0.999, eps=1e-4):
    """One ELBO epoch of the two-layer model with Burda et al.'s Adam (ε 1e-4)."""
    return _adam_scan(two_layer_loss_fn, params, opt, batches, key, lr, b1, b2, eps)


# ------------------------------------------------ the conv VAE's floor (--model conv)


def init_conv(key, hidden=16, latent=32, side=28):
    """vaelab's conv VAE: convolutions 1→32→64 (3 × 3, stride 2), dense ``hidden``, the
    heads, and the mirror with transposed convolutions 64→64→32 (stride 2) and 32→1."""
    quarter = side // 4
    flat = 64 * quarter * quarter
    keys = jax.random.split(key, 2)
    params = _glorot(keys[0], {"enc": (flat, hidden), "mean": (hidden, latent),
                               "log_var": (hidden, latent), "dec": (latent, hidden),
                               "expand": (hidden, flat)})
    shapes = {"conv1": (3, 3, 1, 32), "conv2": (3, 3, 32, 64), "up1": (3, 3, 64, 64),
              "up2": (3, 3, 64, 32), "out": (3, 3, 32, 1)}  # (kh, kw, in, out) each
    for (name, shape), k in zip(shapes.items(), jax.random.split(keys[1], len(shapes))):
        std = np.sqrt(2.0 / (9 * shape[2] + 9 * shape[3]))
        params[name] = (jax.random.truncated_normal(k, -2, 2, shape) * std / 0.8796,
                        jnp.zeros(shape[3]))
    return params


def _conv(x, p, stride=1):
    out = jax.lax.conv_general_dilated(x, p[0], (stride, stride), "SAME",
                                       dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return out + p[1]


def _down(x, p):
    """A stride-2, 3 × 3 "same" convolution (even sides: one row and column of padding at
    the end) as its strided patches times the kernel, as vaelab's ``PatchConv2D``."""
    w, b = p  # (3, 3, in, out)
    n, h, wd, c = x.shape
    assert h % 2 == wd % 2 == 0, "even sides only"
    padded = jnp.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)))
    patches = jnp.concatenate([padded[:, i:i + h - 1:2, j:j + wd - 1:2]
                               for i in range(3) for j in range(3)], -1)
    return patches @ w.reshape(9 * c, -1) + b


def _up(x, p):
    """A stride-2, 3 × 3 transposed convolution as one stride-1 convolution over the four
    output phases, computed as its 2 × 2 patches times the phases' kernel, then
    depth-to-space (the form vaelab's model uses: XLA's gradients of ``conv_transpose``,
    and of convolutions generally, are slow on a CPU next to its matrix products)."""
    w, b = p  # (3, 3, in, out)
    zero = jnp.zeros_like(w[:1])
    taps = jnp.concatenate([w, zero], 0)  # tap 3: zeros
    taps = jnp.concatenate([taps, jnp.zeros_like(taps[:, :1])], 1)
    index = jnp.array([[2, 0], [3, 1]])  # phase r, offset j → tap
    k = taps[index][:, :, index]  # (rh, jh, rw, jw, in, out)
    k = k.transpose(1, 3, 4, 0, 2, 5).reshape(4 * w.shape[2], 4 * w.shape[3])
    n, h, wd, _ = x.shape
    padded = jnp.pad(x, ((0, 0), (1, 0), (1, 0), (0, 0)))
    patches = jnp.concatenate([padded[:, i:i + h, j:j + wd] for i in (0, 1) for j in (0, 1)], -1)
    y = patches @ k
    y = y.reshape(n, h, wd, 2, 2, -1).transpose(0, 1, 3, 2, 4, 5).reshape(n, 2 * h, 2 * wd, -1)
    return y + b


def conv_forward(params, x, key):
    dense = lambda p, v: v @ p[0] + p[1]  # noqa: E731
    side = int(np.sqrt(x.shape[1]))
    h = jax.nn.relu(_down(jax.nn.relu(_down(x.reshape(-1, side, side, 1), params["conv1"])),
                          params["conv2"]))
    h = jax.nn.relu(dense(params["enc"], h.reshape(h.shape[0], -1)))
    mean, log_var = dense(params["mean"], h), dense(params["log_var"], h)
    z = mean + jnp.exp(0.5 * log_var) * jax.random.normal(key, mean.shape)
    h = jax.nn.relu(dense(params["expand"], jax.nn.relu(dense(params["dec"], z))))
    h = h.reshape(-1, side // 4, side // 4, 64)
    h = jax.nn.relu(_up(jax.nn.relu(_up(h, params["up1"])), params["up2"]))
    return _conv(h, params["out"]).reshape(x.shape[0], -1), mean, log_var


def conv_loss_fn(params, x, key, kl_scale):
    x_hat, mean, log_var = conv_forward(params, x, key)
    kl = -0.5 * jnp.sum(1 + log_var - mean**2 - jnp.exp(log_var), axis=-1)
    return jnp.mean((x_hat - x) ** 2) + kl_scale * jnp.mean(kl)


@functools.partial(jax.jit, donate_argnums=(0, 1))
def train_steps_conv(params, opt, batches, key, lr=1e-3, b1=0.9, b2=0.999, eps=1e-7):
    """``len(batches)`` Adam steps, unrolled into one compiled call: XLA's CPU convolutions
    inside a rolled loop run about 10× slower (``docs/performance.md``), so an epoch of the
    conv floor is a Python loop over such groups, as vaelab's is."""
    return _adam_scan(conv_loss_fn, params, opt, batches, key, lr, b1, b2, eps,
                      unroll=len(batches), kl_scale=1 / 784)


@jax.jit
def conv_validation_loss(params, x, key):
    return conv_loss_fn(params, x, key, 1 / 784)
