"""Decoder likelihoods p(x | z): everything that depends on what the decoder outputs.

A likelihood gives the training loss, log p(x | z), the decoded images as pixels,
how the data are prepared for it, and the KL scale that makes ``loss + scale · KL``
a multiple of the negative ELBO. Code that depends on the likelihood asks one of
these objects (``get(name)``) instead of branching on its name.

- ``gaussian``: the lab's model. The decoder outputs means; the loss is the mean
  squared error (mean over the D pixels), which is ``2σ²/D`` times the Gaussian
  negative log-likelihood ``Σ(x − x̂)²/(2σ²)`` up to a constant, so its natural KL
  scale is ``1/D`` (the lab's 1/784) and a KL scale ``s`` implies ``σ² = D·s/2``.
- ``bernoulli``: the decoder outputs logits; the loss is the binary cross-entropy
  summed over pixels (the negative log-likelihood itself), so the natural KL scale is
  1. Images are binarized: the training set afresh each epoch, the test set once.
"""

from __future__ import annotations

import abc
import math

import keras
import numpy as np
from keras import ops

LOG_2PI = math.log(2 * math.pi)
OUTPUT_CLIP = 1e-3  # Bernoulli.decoded_for keeps mean pixels in [0.001, 0.999]


class Likelihood(abc.ABC):
    """What every decoder likelihood answers (the module docstring says why).

    Attributes:
        name: its name in settings and files (``get(name)``).
        binarized: the images are binary draws from the gray ones (training set afresh
            each epoch, test set once).
        kl_scale_sets_variance: any KL scale is this likelihood with some variance (so the
            loss with that scale is an ELBO); otherwise only the natural scale is.
        squared_error: log p(x | z) is a scaled squared error plus a constant, which the
            bounds may expand (``vaelab.analysis.bounds``).
    """

    name: str
    binarized: bool
    kl_scale_sets_variance: bool
    squared_error: bool = False

    @abc.abstractmethod
    def loss(self, x, decoded):
        """The training loss per example: ``(batch, D) -> (batch,)`` in ``keras.ops``."""

    @abc.abstractmethod
    def natural_kl_scale(self, pixels: int) -> float:
        """The KL scale that makes ``loss + scale · KL`` a multiple of the negative ELBO."""

    @abc.abstractmethod
    def variance(self, pixels: int, kl_scale: float) -> float | None:
        """The decoder variance a KL scale implies (``None`` where it has none)."""

    @abc.abstractmethod
    def log_normalizer(self, pixels: int, variance=None) -> float:
        """The constant of log p(x | z) over ``pixels`` pixels."""

    @abc.abstractmethod
    def log_prob(self, x, decoded, variance=None, xp=np):
        """log p(x | z) summed over pixels: ``(..., D) -> (...)``."""

    @abc.abstractmethod
    def to_pixels(self, decoded) -> np.ndarray:
        """Decoder outputs as images in [0, 1]."""

    @abc.abstractmethod
    def prepare_test(self, x: np.ndarray, seed: int) -> np.ndarray:
        """The test images as this likelihood scores them."""


class Gaussian(Likelihood):
    """``p(x | z) = N(x | decoder(z), σ² I)``; trained with the lab's per-pixel MSE."""

    name = "gaussian"
    binarized = False
    kl_scale_sets_variance = True   # any KL scale s is this likelihood with σ² = D·s/2
    squared_error = True

    def loss(self, x, decoded):
        """Mean squared error per example, mean over pixels: ``(batch, D) -> (batch,)``."""
        return ops.mean(ops.square(x - decoded), axis=-1)

    def natural_kl_scale(self, pixels: int) -> float:
        return 1.0 / pixels

    def variance(self, pixels: int, kl_scale: float) -> float:
        """The σ² that ``MSE + kl_scale · KL`` implies: ``σ² = D · kl_scale / 2``.

        ``MSE + s·KL = (2σ²/D) · (Σ(x − x̂)²/(2σ²) + KL)`` when ``σ² = D·s/2``; with the
        lab's ``s = 1/784`` and ``D = 784``, σ² = ½.
        """
        return pixels * kl_scale / 2

    def log_prob(self, x, decoded, variance: float, xp=np):
        """log p(x | z) summed over pixels, ``(..., D) -> (...)``; ``xp`` is NumPy or ``keras.ops``."""
        return (-0.5 * xp.sum(xp.square(x - decoded), axis=-1) / variance
                - self.log_normalizer(x.shape[-1], variance))

    def log_normalizer(self, pixels: int, variance: float) -> float:
        """``½ D log(2πσ²)``, the Gaussian's normalising constant over ``D`` pixels."""
        return 0.5 * pixels * (LOG_2PI + math.log(variance))

    def to_pixels(self, decoded) -> np.ndarray:
        """Decoded means as images: clipped to [0, 1]."""
        return np.clip(np.asarray(decoded), 0.0, 1.0)

    def prepare_test(self, x: np.ndarray, seed: int) -> np.ndarray:
        return x

    def decoded_for(self, pixel_means: np.ndarray) -> np.ndarray:
        """The decoder output that means ``pixel_means``: the means themselves."""
        return np.asarray(pixel_means, np.float32)


class Bernoulli(Likelihood):
    """``p(x | z) = Π Bernoulli(x_i | sigmoid(l_i))`` with logits ``l = decoder(z)``."""

    name = "bernoulli"
    binarized = True
    kl_scale_sets_variance = False  # the loss is −log p(x|z) itself: only s = 1 is an ELBO

    def loss(self, x, logits):
        """Negative log-likelihood per example, summed over pixels: ``(batch, D) -> (batch,)``."""
        return ops.sum(ops.binary_crossentropy(x, logits, from_logits=True), axis=-1)

    def natural_kl_scale(self, pixels: int) -> float:
        return 1.0

    def variance(self, pixels: int, kl_scale: float) -> None:
        return None

    def log_normalizer(self, pixels: int, variance=None) -> float:
        """A Bernoulli needs no normalising constant: 0."""
        return 0.0

    def log_prob(self, x, logits, variance=None, xp=np):
        """``Σ x·l − softplus(l)`` over pixels, ``(..., D) -> (...)``; ``xp`` is NumPy or ``keras.ops``."""
        return xp.sum(x * logits - xp.logaddexp(0.0, logits), axis=-1)

    def to_pixels(self, logits) -> np.ndarray:
        """Pixel probabilities ``sigmoid(l)``."""
        return 1.0 / (1.0 + np.exp(-np.asarray(logits)))

    def decoded_for(self, pixel_means: np.ndarray) -> np.ndarray:
        """The logits of ``pixel_means``, clipped to [0.001, 0.999] first (as Burda et al.'s
        code does for its output bias, so that an always-black pixel gets −6.9, not −∞)."""
        p = np.clip(np.asarray(pixel_means, np.float64), OUTPUT_CLIP, 1 - OUTPUT_CLIP)
        return np.log(p / (1 - p)).astype(np.float32)

    def prepare_test(self, x: np.ndarray, seed: int) -> np.ndarray:
        """The test set binarized once: ``uniform < x`` with draws from ``seed``."""
        return binarize(x, np.random.default_rng(seed))


def binarize(gray: np.ndarray, rng: np.random.Generator, out: np.ndarray | None = None):
    """Binary images drawn from gray ones in [0, 1]: ``uniform < gray``, uniforms float32 from
    ``rng``, one per pixel in row-major order; into ``out`` (any dtype) when given."""
    draws = rng.random(gray.shape, dtype=np.float32)
    if out is None:
        return np.less(draws, gray).astype(np.float32)
    return np.less(draws, gray, out=out, casting="unsafe")


LIKELIHOODS = {"gaussian": Gaussian(), "bernoulli": Bernoulli()}


def get(name: str):
    """The likelihood called ``name``; ``ValueError`` naming the choices otherwise."""
    try:
        return LIKELIHOODS[name]
    except (KeyError, TypeError):
        raise ValueError(f"likelihood must be one of {', '.join(LIKELIHOODS)}, "
                         f"received {name!r}") from None


@keras.saving.register_keras_serializable(package="vaelab")
def bernoulli_nll(y_true, logits):
    """The Bernoulli loss as a Keras loss function, for ``compile(loss=...)``: ``(batch,)``."""
    return LIKELIHOODS["bernoulli"].loss(y_true, logits)
