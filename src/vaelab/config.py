"""Frozen settings of a training run, and the parsing/validation of user values.

Every check raises ``UsageError`` with one line that names the value and says
what was expected; the CLI turns it into exit status 2.
"""

from __future__ import annotations

import dataclasses
import math
from fractions import Fraction

from vaelab import schedules


class UsageError(ValueError):
    """A value given on the command line or to the API is not usable."""


# The default KL scale of each decoder likelihood: the lab's per-pixel MSE is a mean over
# 784 pixels, so its KL is divided by 784; the Bernoulli loss is a sum over pixels.
LIKELIHOODS = {"gaussian": 1 / 784, "bernoulli": 1.0}


class NonFiniteLoss(RuntimeError):
    """Training produced a NaN or infinite loss and was stopped (CLI exit status 3)."""


def parse_kl_scale(text) -> float:
    """``"1/784"``, ``"0.5"`` or a number → a positive finite float."""
    try:
        value = float(Fraction(text)) if isinstance(text, str) else float(text)
    except (ValueError, ZeroDivisionError, TypeError):
        raise UsageError(f"--kl-scale must be a positive number or fraction such as 1/784, "
                         f"received {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise UsageError(f"--kl-scale must be a positive number or fraction such as 1/784, "
                         f"received {text!r}")
    return value


def format_scale(value: float) -> str:
    """``1/784`` rather than 0.001276 when the scale is the reciprocal of an integer."""
    inverse = 1.0 / value
    if value < 1 and abs(inverse - round(inverse)) < 1e-6:
        return f"1/{round(inverse)}"
    return f"{value:g}"


def _positive_int(name: str, value, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise UsageError(f"{name} must be a positive integer, received {value!r}")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a VAE training run (defaults are the lab's)."""

    epochs: int = 2                 # passes over the training set
    batch_size: int = 32            # Keras' default, used by the lab
    hidden_dim: int = 512           # width of the encoder and decoder hidden layers
    latent_dim: int = 32            # dimensions of z
    kl_scale: float | None = None   # multiplies the KL; None: 1/784 (gaussian), 1 (bernoulli)
    likelihood: str = "gaussian"    # "gaussian": the lab's MSE; "bernoulli": logits + summed BCE
    anneal: str | None = None       # "START:DURATION", the lab's linear KL annealing
    schedule: str | None = None     # "cyclical:C:R", "sigmoid:C:S", "linear:S:D", "constant:W"
    learning_rate: float = 1e-3     # Adam's default, used by the lab
    seed: int = 0                   # seeds weights, noise and shuffling
    data_dir: str | None = None     # a folder of MNIST-format IDX files; None = verified MNIST
    train_size: int | None = None   # use the first N training images (None = all)
    test_size: int | None = None    # use the first N test images (None = all)
    distribute: bool = False        # data-parallel over all local devices (JAX backend only)

    def __post_init__(self):
        for name in ("epochs", "batch_size", "hidden_dim", "latent_dim"):
            _positive_int(name.replace("_", "-"), getattr(self, name))
        for name in ("train_size", "test_size"):
            _positive_int(name.replace("_", "-"), getattr(self, name), allow_none=True)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise UsageError(f"seed must be a non-negative integer, received {self.seed!r}")
        if self.likelihood not in LIKELIHOODS:
            raise UsageError(f"likelihood must be one of {', '.join(LIKELIHOODS)}, "
                             f"received {self.likelihood!r}")
        if self.kl_scale is None:
            object.__setattr__(self, "kl_scale", LIKELIHOODS[self.likelihood])
        object.__setattr__(self, "kl_scale", parse_kl_scale(self.kl_scale))
        if not (isinstance(self.learning_rate, (int, float)) and math.isfinite(self.learning_rate)
                and self.learning_rate > 0):
            raise UsageError(f"learning-rate must be a positive number, received {self.learning_rate!r}")
        if self.anneal is not None and self.schedule is not None:
            raise UsageError("give --anneal or --schedule, not both")
        try:
            self.kl_schedule()
        except ValueError as exc:
            raise UsageError(str(exc)) from None

    def decoder_variance(self, pixels: int) -> float:
        """The Gaussian decoder variance σ² the training objective implies.

        ``MSE + s·KL`` is ``(2σ²/D)``-times ``Σ(x − x̂)²/(2σ²) + KL`` when
        ``σ² = D·s/2``: with the lab's ``s = 1/784`` and ``D = 784``, σ² = ½.
        """
        return pixels * self.kl_scale / 2

    def kl_schedule(self) -> schedules.Schedule | None:
        """The KL-weight schedule, or ``None`` for a constant weight of 1."""
        if self.anneal is not None:
            return schedules.parse_anneal(self.anneal)
        if self.schedule is not None:
            return schedules.parse_schedule(self.schedule, self.epochs)
        return None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})
