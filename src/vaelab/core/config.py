"""Frozen settings of a training run, and the parsing/validation of user values.

Every check raises ``UsageError`` with one line that names the value and says
what was expected; the CLI turns it into exit status 2.
"""

from __future__ import annotations

import dataclasses
import math
from fractions import Fraction

from vaelab.choices import (ACTIVATIONS, MAX_EPOCHS, MAX_FLOW_STEPS, MAX_HIDDEN_LAYERS,
                            MAX_LATENT_LAYERS, MAX_PSEUDO_INPUTS, MAX_SEED, MODELS,
                            OUTPUT_BIASES)
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


def latent_spec(option: str, text, plain: str, kind: str, most: int) -> int:
    """``plain`` → 0, ``"KIND:N"`` with 1 ≤ N ≤ ``most`` → N; else ``ValueError`` naming the
    option and the forms (``--prior vamp:500``, ``--posterior iaf:2``)."""
    expected = (f"{option} must be {plain} or {kind}:N with N an integer from 1 to {most}, "
                f"received {text!r}")
    if text == plain:
        return 0
    name, _, count = text.partition(":") if isinstance(text, str) else ("", "", "")
    if (name != kind or not (count.isascii() and count.isdecimal()) or count != str(int(count))
            or not 1 <= int(count) <= most):
        raise ValueError(expected)
    return int(count)


FLOW_CONTEXT = ":context"


def posterior_spec(text) -> tuple[int, bool]:
    """``gaussian`` → ``(0, False)``; ``iaf:N`` → ``(N, False)``; ``iaf:N:context`` (each
    step also sees the encoder's mean and log-variance, Kingma et al.'s context) →
    ``(N, True)``; else ``ValueError`` naming the forms."""
    context = isinstance(text, str) and text.startswith("iaf:") and text.endswith(FLOW_CONTEXT)
    try:
        return latent_spec("--posterior", text[:-len(FLOW_CONTEXT)] if context else text,
                           "gaussian", "iaf", MAX_FLOW_STEPS), context
    except ValueError:
        raise ValueError(f"--posterior must be gaussian, iaf:N or iaf:N{FLOW_CONTEXT} with N an "
                         f"integer from 1 to {MAX_FLOW_STEPS}, received {text!r}") from None


def format_free_bits(value) -> str:
    """``0.5``, or one λ per stochastic layer: ``0.5,0.25``."""
    if isinstance(value, (list, tuple)):
        return ",".join(f"{v:g}" for v in value)
    return f"{value:g}"


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


def _check_widths(option: str, widths, most: int, what: str, example: str) -> None:
    """``widths``: 1 to ``most`` positive integers; else ``UsageError`` naming ``option``."""
    if not widths:
        raise UsageError(f"{option} needs at least one width, e.g. {example}")
    for width in widths:
        _positive_int(f"{option} widths", width)
    if len(widths) > most:
        raise UsageError(f"{option} takes at most {most} widths {what}, received {len(widths)}")


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
    hidden_dim: int | tuple = 512   # hidden width(s) of the encoder; the decoder mirrors; with
                                    # several stochastic layers one tuple of widths per layer
    activation: str = "relu"        # of the hidden layers: a Keras activation name (ACTIVATIONS)
    latent_dim: int | tuple[int, ...] = 32  # dimensions of z; a tuple: of each stochastic
                                    # layer, bottom-up (Burda et al.'s (100, 50))
    prior: str = "standard"         # "standard" N(0, I) or "vamp:K" (Tomczak & Welling's VampPrior)
    posterior: str = "gaussian"     # "gaussian" (diagonal), "iaf:STEPS" or "iaf:STEPS:context"
    kl_scale: float | None = None   # multiplies the KL; None: the likelihood's natural scale,
                                    # 1/pixels (gaussian: 1/784 for MNIST), 1 (bernoulli)
    beta: float = 1.0               # the KL term times β on top of kl_scale (β-VAE)
    free_bits: float | tuple[float, ...] = 0.0  # λ nats per latent dimension (Kingma et al.
                                    # 2016), or one λ per stochastic layer; 0: plain KL
    objective: str = "elbo"         # "elbo" (the lab's) or "iwae:K" (Burda et al. 2015)
    likelihood: str = "gaussian"    # "gaussian": the lab's MSE; "bernoulli": logits + summed BCE
    anneal: str | None = None       # "START:DURATION", the lab's linear KL annealing
    schedule: str | None = None     # "cyclical:C:R", "sigmoid:C:S", "linear:S:D", "constant:W"
    learning_rate: float = 1e-3     # Adam's default, used by the lab
    lr_schedule: str | None = None  # "burda": Burda et al.'s 10^(−i/7) for 3^i passes, i = 0…7
    adam_epsilon: float = 1e-7      # Adam's ε (Keras' default; Burda et al. used 1e-4)
    output_bias: str = "zero"       # the decoder output bias at the start: "zero" (Keras') or
                                    # "data" (the training images' mean pixel, as Burda et al.)
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
        for name in ("epochs", "batch_size", "heldout_size"):
            _positive_int(name.replace("_", "-"), getattr(self, name))
        if self.epochs > MAX_EPOCHS:
            raise UsageError(f"epochs must be at most {MAX_EPOCHS}, received {self.epochs}")
        self._check_latent_and_hidden()
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
        self._check_free_bits()
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
        if self.output_bias not in OUTPUT_BIASES:
            raise UsageError(f"--output-bias must be one of {', '.join(OUTPUT_BIASES)}, "
                             f"received {self.output_bias!r}")
        if self.output_bias == "data" and self.model == "conv":
            raise UsageError("--output-bias data needs --model mlp: the conv decoder's output "
                             "layer has one bias for all pixels, not one per pixel")
        if self.anneal is not None and self.schedule is not None:
            raise UsageError("give --anneal or --schedule, not both")
        try:
            self.kl_schedule()
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        if isinstance(objective, objectives.IWAE):
            self._check_iwae()
        self._check_latent_model()

    def _check_latent_and_hidden(self) -> None:
        """``latent_dim``: one width or one per stochastic layer; ``hidden_dim``: the widths
        of one MLP, or (several layers) one group of widths per layer."""
        latent = self.latent_dim
        if isinstance(latent, (list, tuple)):
            _check_widths("--latent-dim", latent, MAX_LATENT_LAYERS, "(stochastic layers)",
                          "32 or 100,50")
            latent = latent[0] if len(latent) == 1 else tuple(latent)
            object.__setattr__(self, "latent_dim", latent)
        else:
            _positive_int("latent-dim", latent)
        hidden = self.hidden_dim
        groups = ([tuple(g) if isinstance(g, (list, tuple)) else g for g in hidden]
                  if isinstance(hidden, (list, tuple)) else [hidden])
        nested = any(isinstance(g, tuple) for g in groups)
        if nested and not all(isinstance(g, tuple) for g in groups):
            raise UsageError(f"--hidden must be widths, or one group of widths per stochastic "
                             f"layer, received {hidden!r}")
        groups = groups if nested else [tuple(groups)]
        for group in groups:
            _check_widths("--hidden", group, MAX_HIDDEN_LAYERS, "(hidden layers) per group",
                          "512 or 200,200")
        layers = len(self.latents)
        if len(groups) != layers:
            spelled = "/".join(",".join(map(str, g)) for g in groups)
            raise UsageError(
                f"--hidden {spelled} has {len(groups)} group(s) of widths for the {layers} "
                f"stochastic layer(s) of --latent-dim {','.join(map(str, self.latents))}; give "
                f"one group per layer, separated by '/', e.g. --latent-dim 100,50 --hidden "
                f"200,200/100,100")
        if layers > 1:
            object.__setattr__(self, "hidden_dim", tuple(groups))
        else:
            group = groups[0]
            object.__setattr__(self, "hidden_dim", group[0] if len(group) == 1 else group)

    def _check_free_bits(self) -> None:
        """λ ≥ 0 nats for every layer, or one λ per stochastic layer."""
        expected = "a non-negative finite number of nats (0: off)"
        value = self.free_bits
        if isinstance(value, (list, tuple)):
            layers = len(self.latents)
            if len(value) != layers:
                raise UsageError(
                    f"--free-bits {','.join(map(str, value))} gives {len(value)} value(s) "
                    f"for the {layers} stochastic layer(s) of --latent-dim "
                    f"{','.join(map(str, self.latents))}; give one λ for every layer, or one "
                    f"per layer")
            value = tuple(_finite("--free-bits", v, expected, lambda v: v >= 0) for v in value)
            value = value[0] if len(value) == 1 else value
            if isinstance(value, tuple) and not any(value):
                value = 0.0
        else:
            value = _finite("--free-bits", value, expected, lambda v: v >= 0)
        object.__setattr__(self, "free_bits", value)

    def _check_latent_model(self) -> None:
        """The prior and posterior: their spelling, then the combinations with a meaning."""
        try:
            components = latent_spec("--prior", self.prior, "standard", "vamp",
                                     MAX_PSEUDO_INPUTS)
            steps, _ = posterior_spec(self.posterior)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        layers = len(self.latents)
        if components and layers > 1:
            raise UsageError(
                f"--prior {self.prior} has no defined meaning with {layers} stochastic layers: "
                f"the VampPrior mixes the posteriors q(z|u) of pseudo-inputs, and the upper "
                f"layers' q(z_2|u) is a mixture over z_1 with no closed form")
        if steps and layers > 1:
            raise UsageError(
                f"--posterior {self.posterior} has no defined meaning with {layers} stochastic "
                f"layers here: the flow acts on a one-layer posterior (Kingma et al.'s "
                f"hierarchies are ladder models, not Burda et al.'s bottom-up one)")
        if components and self.conditional:
            raise UsageError(
                f"--prior {self.prior} cannot be combined with --conditional: the pseudo-inputs "
                f"have no labels, and a conditional VAE's prior is the standard normal")
        if (components or steps) and self.free_bits:
            which = f"--prior {self.prior}" if components else f"--posterior {self.posterior}"
            raise UsageError(
                f"{which} cannot be combined with --free-bits: free bits act on a KL per "
                f"dimension, and a {'mixture prior' if components else 'flow'} has none")

    @property
    def latents(self) -> tuple[int, ...]:
        """Each stochastic layer's dimensions, bottom-up."""
        return self.latent_dim if isinstance(self.latent_dim, tuple) else (self.latent_dim,)

    @property
    def hidden_groups(self) -> tuple[tuple[int, ...], ...]:
        """One tuple of hidden widths per stochastic layer, bottom-up."""
        if len(self.latents) > 1:
            return self.hidden_dim
        return (self.hidden,)

    @property
    def pseudo_inputs(self) -> int:
        """The VampPrior's K (0: the standard normal prior)."""
        return latent_spec("--prior", self.prior, "standard", "vamp", MAX_PSEUDO_INPUTS)

    @property
    def flow_steps(self) -> int:
        """IAF steps on the posterior (0: a diagonal Gaussian)."""
        return posterior_spec(self.posterior)[0]

    @property
    def flow_context(self) -> bool:
        """Whether each IAF step also sees the encoder's mean and log-variance."""
        return posterior_spec(self.posterior)[1]

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
        """The hidden widths of the first stochastic layer's encoder (and the decoder) as a
        tuple (``hidden_dim`` may be one int)."""
        if isinstance(self.hidden_dim, tuple) and isinstance(self.hidden_dim[0], tuple):
            return self.hidden_dim[0]
        return self.hidden_dim if isinstance(self.hidden_dim, tuple) else (self.hidden_dim,)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})
