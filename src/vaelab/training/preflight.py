"""Checks before a run starts: usable data, a model that fits in memory, and warnings.

Everything here runs before anything is written, so a refused run leaves nothing.
"""

from __future__ import annotations

import math
import sys

import numpy as np

from vaelab import machine
from vaelab.core import objectives
from vaelab.core.config import TrainConfig, UsageError
from vaelab.core.models import conv
from vaelab.data import Dataset

MIN_TEST_IMAGES = 2           # the collapse verdict is a variance over test images
FEW_TEST_IMAGES = 100         # below this the verdict is noisy: a warning
BYTES_PER_PARAMETER = 4 * 4   # float32 weight, gradient and Adam's two moments
BYTES_PER_ACTIVATION_COPIES = 3  # an activation, its gradient, and XLA's temporaries
MEMORY_SHARE = 0.8            # of the machine's memory a model may take
MAX_CLASSES = 1000            # one-hot labels of a conditional VAE, at most


def run_dataset(config: TrainConfig, data: Dataset | None = None) -> Dataset:
    """The run's data: ``data`` (e.g. arrays passed in Python) or ``config.data_dir``,
    cut to the configured sizes and prepared for the likelihood; ``UsageError`` when a
    run cannot use them."""
    if data is None:
        data = Dataset.load(config.data_dir, config.dataset)
    shape = data.image_shape
    if len(shape) != 2 or shape[0] != shape[1]:
        raise UsageError(f"images must be square for the figures and the explorer, these are "
                         f"{'x'.join(map(str, shape))}")
    if config.model == "conv":
        try:
            conv.check_side(data.input_dim)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    if config.conditional:
        labels = np.concatenate([data.y_train, data.y_test])
        if labels.min() < 0 or data.classes < 2 or data.classes > MAX_CLASSES:
            raise UsageError(f"--conditional needs class labels 0 … k−1 with 2 ≤ k ≤ "
                             f"{MAX_CLASSES}; these labels run from {int(labels.min())} to "
                             f"{int(labels.max())}")
    dataset = data.select(config.train_size, config.test_size, config.model_likelihood,
                          config.test_binarization_seed)
    n_train, n_test = len(dataset.x_train), len(dataset.x_test)
    if config.batch_size > n_train:
        raise UsageError(f"batch-size {config.batch_size} is larger than the {n_train} training images")
    if n_train <= config.lab_image:
        raise UsageError(f"need at least {config.lab_image + 1} training images, received {n_train}")
    if n_test < MIN_TEST_IMAGES:
        raise UsageError(f"need at least {MIN_TEST_IMAGES} test images for the collapse verdict "
                         f"(a variance over images), received {n_test}")
    return dataset


def as_dataset(arrays) -> Dataset | None:
    """A :class:`Dataset` from ``((x_train, y_train), (x_test, y_test))`` (or a Dataset)."""
    if arrays is None or isinstance(arrays, Dataset):
        return arrays
    try:
        return Dataset.from_arrays(arrays)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def parameters(config: TrainConfig, input_dim: int) -> int:
    """Weights of the VAE: the MLP's dense layers D (+C) → H₁ … H_k → two heads of L, then
    L (+C) → H_k … H₁ → D; the conv model's convolutions around the same dense layers."""
    def dense(widths):
        return sum(a * b + b for a, b in zip(widths, widths[1:]))

    hidden, latent, label = list(config.hidden), config.latents[0], config.classes or 0
    latent_model = _latent_parameters(config, input_dim)
    if config.model == "conv":
        flat = (math.isqrt(input_dim) // 4) ** 2 * conv.FILTERS[-1]
        k = conv.KERNEL ** 2
        convs = (k * 32 + 32) + (k * 32 * 64 + 64)                # encoder
        convs += (k * 64 * 64 + 64) + (k * 64 * 32 + 32) + (k * 32 + 1)  # decoder
        return (convs + dense([flat + label, *hidden]) + 2 * (hidden[-1] * latent + latent)
                + dense([latent + label, *reversed(hidden), flat]) + latent_model)
    return (dense([input_dim + label, *hidden]) + 2 * (hidden[-1] * latent + latent)
            + dense([latent + label, *reversed(hidden), input_dim]) + latent_model)


def _latent_parameters(config: TrainConfig, input_dim: int) -> int:
    """Weights of the upper layers' two MLPs each, the flow's MADEs and the pseudo-inputs."""
    def gaussian_net(inputs, widths, latent):
        chain = [inputs, *widths]
        return sum(a * b + b for a, b in zip(chain, chain[1:])) + 2 * (widths[-1] * latent + latent)

    total = 0
    for below, latent, widths in zip(config.latents, config.latents[1:], config.hidden_groups[1:]):
        total += gaussian_net(below, widths, latent) + gaussian_net(latent, widths[::-1], below)
    latent, width = config.latents[0], config.hidden[-1]
    made = latent * width + width + width * width + width + 2 * (width * latent + latent)
    if config.flow_context:  # each step's dense layer from [mean, log_var]
        made += 2 * latent * width + width
    return total + config.flow_steps * made + config.pseudo_inputs * input_dim


def step_bytes(config: TrainConfig, input_dim: int, rows: int) -> int:
    """One step's activations: ``rows`` images (the larger of a training and a validation
    batch), times the importance samples of ``iwae:K``, through every layer of the encoder
    and the decoder, each kept for the gradient (float32, about three copies)."""
    samples = objectives.parse(config.objective).samples
    floats = (2 * input_dim + 2 * sum(config.hidden) + 4 * sum(config.latents)
              + 4 * sum(map(sum, config.hidden_groups[1:]))
              + config.flow_steps * ((2 + config.flow_context) * config.hidden[-1]
                                     + 4 * config.latents[0]))
    pseudo = config.pseudo_inputs * (input_dim + 2 * sum(config.hidden) + 4 * config.latents[0])
    return (rows * samples * floats + pseudo) * 4 * BYTES_PER_ACTIVATION_COPIES


def check_memory(config: TrainConfig, input_dim: int, copies: int = 1,
                 data_bytes: int = 0, rows: int = 0) -> None:
    """Refuse, before anything is written, a model whose weights, gradients and optimizer
    state, or whose activations for one step of ``rows`` images, cannot fit in memory;
    ``copies`` models trained together (a population) with ``data_bytes`` of their inputs."""
    needed = parameters(config, input_dim) * BYTES_PER_PARAMETER * copies + data_bytes
    step = step_bytes(config, input_dim, rows) * copies
    available = machine.memory_bytes()
    if needed <= MEMORY_SHARE * available < needed + step:  # the weights fit, a step not
        raise UsageError(
            f"objective {config.objective} on batches of {rows} images (the largest, training "
            f"or validation) needs about {step / 2**30:.1f} GiB of activations for one step"
            f"{f' of {copies} runs together' if copies > 1 else ''}; this machine has "
            f"{available / 2**30:.1f} GiB (fewer importance samples or a smaller batch)")
    if needed > MEMORY_SHARE * available:
        what = (f"{copies} runs together (their weights, gradients, Adam's state and training "
                f"arrays)" if copies > 1 else "weights, gradients and Adam's state")
        raise UsageError(
            f"hidden-dim {'/'.join(','.join(map(str, g)) for g in config.hidden_groups)} and "
            f"latent-dim {','.join(map(str, config.latents))} need about "
            f"{needed / 2**30:.1f} GiB for {what}; this machine "
            f"has {available / 2**30:.1f} GiB")


def warn(config: TrainConfig, dataset: Dataset) -> None:
    """One line on standard error for each setting that will not do what it seems to."""
    weights = config.kl_weights()
    if all(w == 0 for w in weights):
        print(f"warning: the KL weight is 0 in every one of the {config.epochs} epoch(s) "
              f"({config.anneal or config.schedule}): the KL term is never trained",
              file=sys.stderr)
    if len(dataset.x_test) < FEW_TEST_IMAGES:
        print(f"warning: the collapse verdict uses only {len(dataset.x_test)} test images "
              f"(at least {FEW_TEST_IMAGES} give a steady one)", file=sys.stderr)
    if (config.pseudo_inputs and config.kl_schedule() is None and config.objective == "elbo"
            and config.output_bias == "zero"):
        print(f"warning: --prior {config.prior} without a KL warm-up (--anneal, --schedule) "
              f"and with a zero output bias: in vaelab's trials this VampPrior collapsed "
              f"(KL → 0) within the first pass; a warm-up (Tomczak and Welling's: 100 epochs) "
              f"or --output-bias data kept it learning (docs/science.md)", file=sys.stderr)
