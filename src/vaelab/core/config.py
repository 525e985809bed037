"""Frozen settings of a training run, and the parsing/validation of user values.

Every check raises ``UsageError`` with one line that names the value and says
what was expected; the CLI turns it into exit status 2.
"""

from __future__ import annotations

import dataclasses
import math
from fractions import Fraction

from vaelab.choices import ACTIVATIONS, MAX_EPOCHS, MAX_HIDDEN_LAYERS, MAX_SEED, MODELS
from vaelab.core import likelihoods, objectives, schedules
from vaelab.data.sources import DATASETS


class UsageError(ValueError):
    """A value given on the command line or to the API is not usable."""



class NonFiniteLoss(RuntimeError):
    """Training produced a NaN or infinite loss and was stopped (CLI exit status 3)."""


class NotebookFailed(RuntimeError):
    """A notebook cell raised while ``vaelab tutorial run`` executed it (CLI exit status 1)."""


class JobFailed(RuntimeError):
    """A process of a multi-process job lost contact with the others (CLI exit status 1)."""


def parse_kl_scale(text) -> float:
    """``"1/784"``, ``"0.5"`` or a number → a positive finite float."""
    try:
        value = float(Fraction(text)) if isinstance(text, str) else float(text)
    except (ValueError, ZeroDivisionError, TypeError, OverflowError):
        raise UsageError(f"--kl-scale must be a positive number or fraction such as 1/784, "
                         f"received {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise UsageError(f"--kl-scale must be a positive number or fraction such as 1/784, "
                         f"received {text!r}")
    return value


def format_scale(value: float) -> str:
    """``1/784`` rather than 0.001276 when the scale is the reciprocal of an integer."""
    inverse = 1.0 / value
    if value < 1 and math.isfinite(inverse) and abs(inverse - round(inverse)) < 1e-6:
        return f"1/{round(inverse)}"
    return f"{value:g}"


def _positive_int(name: str, value, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise UsageError(f"{name} must be a positive integer, received {value!r}")


def _finite(name: str, value, expected: str, allowed) -> float:
    """``value`` as a float if it is a finite number passing ``allowed``; else ``UsageError``."""
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not math.isfinite(value) or not allowed(value)):
        raise UsageError(f"{name} must be {expected}, received {value!r}")
    return float(value)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a VAE training run (defaults are the lab's)."""

    epochs: int = 2                 # passes over the training set
    batch_size: int = 32            # Keras' default, used by the lab
    model: str = "mlp"              # the encoder/decoder family: "mlp" (the lab's) or "conv"
    conditional: bool = False       # feed the one-hot class label to the encoder and decoder
    classes: int | None = None      # classes of a conditional run's labels (set from the data)
    hidden_dim: int | tuple[int, ...] = 512  # hidden width(s) of the encoder; the decoder mirrors
    activation: str = "relu"        # of the hidden layers: a Keras activation name (ACTIVATIONS)
    latent_dim: int = 32            # dimensions of z
    kl_scale: float | None = None   # multiplies the KL; None: the likelihood's natural scale,
                                    # 1/pixels (gaussian: 1/784 for MNIST), 1 (bernoulli)
    beta: float = 1.0               # the KL term times β on top of kl_scale (β-VAE)
    free_bits: float = 0.0          # λ nats per latent dimension (Kingma et al. 2016); 0: plain KL
    objective: str = "elbo"         # "elbo" (the lab's) or "iwae:K" (Burda et al. 2015)
    likelihood: str = "gaussian"    # "gaussian": the lab's MSE; "bernoulli": logits + summed BCE
    anneal: str | None = None       # "START:DURATION", the lab's linear KL annealing
    schedule: str | None = None     # "cyclical:C:R", "sigmoid:C:S", "linear:S:D", "constant:W"
    learning_rate: float = 1e-3     # Adam's default, used by the lab
    lr_schedule: str | None = None  # "burda": Burda et al.'s 10^(−i/7) for 3^i passes, i = 0…7
    adam_epsilon: float = 1e-7      # Adam's ε (Keras' default; Burda et al. used 1e-4)
    seed: int = 0                   # seeds weights, noise and shuffling
    dataset: str = "mnist"          # the named dataset ("mnist", "fashion-mnist") when no data_dir
    data_dir: str | None = None     # a folder of MNIST-format IDX files of any image size
    train_size: int | None = None   # use the first N training images (None = all)
    test_size: int | None = None    # use the first N test images (None = all)
    distribute: bool = False        # data-parallel over all local devices (JAX backend only)
    # Fixed by the lab, recorded because they change the numbers:
    heldout_size: int = 1000        # test images the collapse monitor watches each epoch
    lab_image: int = 1              # the lab's x_train[2, ] in R (1-based) is index 1 here
    test_binarization_seed: int = 0  # bernoulli: the test set is binarized once, with this seed

    def __post_init__(self):
        for name in ("epochs", "batch_size", "latent_dim", "heldout_size"):
            _positive_int(name.replace("_", "-"), getattr(self, name))
        if self.epochs > MAX_EPOCHS:
            raise UsageError(f"epochs must be at most {MAX_EPOCHS}, received {self.epochs}")
        hidden = self.hidden_dim
        if isinstance(hidden, (list, tuple)):
            if not hidden:
                raise UsageError("--hidden needs at least one width, e.g. 512 or 200,200")
            for width in hidden:
                _positive_int("--hidden widths", width)
            if len(hidden) > MAX_HIDDEN_LAYERS:
                raise UsageError(f"--hidden takes at most {MAX_HIDDEN_LAYERS} widths (hidden "
                                 f"layers), received {len(hidden)}")
            object.__setattr__(self, "hidden_dim", hidden[0] if len(hidden) == 1 else tuple(hidden))
        else:
            _positive_int("hidden-dim", hidden)
        if self.model not in MODELS:
            raise UsageError(f"model must be one of {', '.join(MODELS)}, received {self.model!r}")
        if self.activation not in ACTIVATIONS:
            raise UsageError(f"activation must be one of {', '.join(ACTIVATIONS)}, "
                             f"received {self.activation!r}")
        for name in ("lab_image", "test_binarization_seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise UsageError(f"{name} must be a non-negative integer, received {value!r}")
        for name in ("train_size", "test_size"):
            _positive_int(name.replace("_", "-"), getattr(self, name), allow_none=True)
        if (isinstance(self.seed, bool) or not isinstance(self.seed, int)
                or not 0 <= self.seed <= MAX_SEED):
            raise UsageError(f"seed must be a non-negative integer, at most {MAX_SEED} "
                             f"(2**32 - 1), received {self.seed!r}")
        if self.dataset not in DATASETS:
            raise UsageError(f"dataset must be one of {', '.join(DATASETS)}, "
                             f"received {self.dataset!r}")
        if self.likelihood not in likelihoods.LIKELIHOODS:
            raise UsageError(f"likelihood must be one of {', '.join(likelihoods.LIKELIHOODS)}, "
                             f"received {self.likelihood!r}")
        if self.kl_scale is not None:
            object.__setattr__(self, "kl_scale", parse_kl_scale(self.kl_scale))
        object.__setattr__(self, "beta", _finite(
            "--beta", self.beta, "a positive finite number (1: the plain KL)", lambda v: v > 0))
        object.__setattr__(self, "free_bits", _finite(
            "--free-bits", self.free_bits, "a non-negative finite number of nats (0: off)",
            lambda v: v >= 0))
        try:
            objective = objectives.parse(self.objective)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        object.__setattr__(self, "objective", objective.name)
        if not (isinstance(self.learning_rate, (int, float)) and math.isfinite(self.learning_rate)
                and self.learning_rate > 0):
            raise UsageError(f"learning-rate must be a positive number, received {self.learning_rate!r}")
        object.__setattr__(self, "adam_epsilon", _finite(
            "--adam-epsilon", self.adam_epsilon, "a positive finite number", lambda v: v > 0))
        if self.lr_schedule is not None and self.lr_schedule not in schedules.LEARNING_RATE_SCHEDULES:
            raise UsageError(f"--lr-schedule must be one of "
                             f"{', '.join(schedules.LEARNING_RATE_SCHEDULES)}, "
                             f"received {self.lr_schedule!r}")
        if self.anneal is not None and self.schedule is not None:
            raise UsageError("give --anneal or --schedule, not both")
        try:
            self.kl_schedule()
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        if isinstance(objective, objectives.IWAE):
            self._check_iwae()

    def _check_iwae(self) -> None:
        """Refuse what has no defined meaning with the importance-weighted objective."""
        k = self.objective
        if self.free_bits:
            raise UsageError(f"--objective {k} cannot be combined with --free-bits: free bits "
                             f"change a closed-form KL per dimension, which the IWAE bound has not")
        if self.anneal is not None or self.schedule is not None:
            raise UsageError(f"--objective {k} cannot be combined with --anneal or --schedule: "
                             f"the bound weighs p(z)/q(z|x) inside the log-sum-exp, not a KL term")
        if self.beta != 1:
            raise UsageError(f"--objective {k} needs --beta 1: a weighted prior inside the "
                             f"importance weights is not a bound on log p(x)")
        if (self.kl_scale is not None and self.kl_scale != 1
                and not self.model_likelihood.kl_scale_sets_variance):
            raise UsageError(f"--objective {k} with the {self.likelihood} likelihood needs "
                             f"--kl-scale 1, received {self.kl_scale:g}")

    def for_data(self, pixels: int) -> "TrainConfig":
        """This config with ``kl_scale`` set: the likelihood's natural scale when it is ``None``."""
        if self.kl_scale is not None:
            return self
        return dataclasses.replace(self, kl_scale=self.model_likelihood.natural_kl_scale(pixels))

    def effective_kl_scale(self, pixels: int | None = None) -> float:
        """What multiplies the KL in the loss: ``β · kl_scale`` (the natural scale for
        ``pixels`` if unset; ``pixels`` may be left out once ``kl_scale`` is set).

        For the Gaussian likelihood, β/D on the per-pixel MSE is the lab's 1/784 times β;
        for the Bernoulli's summed cross-entropy it is β itself.
        """
        if self.kl_scale is None and pixels is None:
            raise ValueError("the natural KL scale needs the number of pixels")
        return self.beta * (self.kl_scale if pixels is None else self.for_data(pixels).kl_scale)

    @property
    def model_likelihood(self):
        """The :mod:`vaelab.core.likelihoods` object named by ``likelihood``."""
        return likelihoods.get(self.likelihood)

    def decoder_variance(self, pixels: int) -> float | None:
        """The Gaussian decoder variance σ² the training objective implies (``None``: Bernoulli)."""
        return self.model_likelihood.variance(pixels, self.effective_kl_scale(pixels))

    def kl_schedule(self) -> schedules.Schedule | None:
        """The KL-weight schedule, or ``None`` for a constant weight of 1."""
        if self.anneal is not None:
            return schedules.parse_anneal(self.anneal)
        if self.schedule is not None:
            return schedules.parse_schedule(self.schedule, self.epochs)
        return None

    def kl_weights(self) -> list[float]:
        """The KL weight of each epoch, 1..epochs."""
        schedule = self.kl_schedule()
        return [1.0 if schedule is None else float(schedule(e)) for e in range(1, self.epochs + 1)]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def hidden(self) -> tuple[int, ...]:
        """The hidden widths as a tuple (``hidden_dim`` may be one int)."""
        return self.hidden_dim if isinstance(self.hidden_dim, tuple) else (self.hidden_dim,)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})
