"""Figures from arrays (no training here). Every figure is written atomically as PNG.

Figures are drawn on ``matplotlib.figure.Figure`` objects, never through pyplot, so
importing vaelab changes no Matplotlib backend (a notebook's figures keep working).
Images are ``(n, pixels)`` rows in [0, 1] with ``pixels = side²``.
"""

from __future__ import annotations

import math
import sys
import textwrap
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from vaelab.analysis.metrics import principal_axes
from vaelab.choices import MAX_SAMPLES, MAX_SEED
from vaelab.core import latents
from vaelab.core.config import format_free_bits, TrainConfig, UsageError, format_scale
from vaelab.store import runs
from vaelab.store.runs import atomic_path

DPI = 100
GRID = 8             # test images in reconstructions.png
SAMPLES = 32         # prior samples in samples.png


def _save(fig: Figure, path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)


def _subplots(rows: int, columns: int, figsize, **kwargs):
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(rows, columns, **kwargs)


def _square(image: np.ndarray) -> np.ndarray:
    side = math.isqrt(image.size)
    if side * side != image.size:
        raise ValueError(f"expected square images, received {image.size} pixels")
    return np.clip(image.reshape(side, side), 0.0, 1.0)


def _show(ax, image, title=None) -> None:
    ax.imshow(_square(image), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)


def pca_2d(points: np.ndarray) -> np.ndarray:
    """Project ``(n, d)`` points on their two leading principal components: ``(n, 2)``."""
    center, components = principal_axes(points)
    return (np.asarray(points, dtype=np.float64) - center) @ components.T


def reconstructions(originals, recons, lab_original, lab_recon, path, title="") -> None:
    """Test originals above their reconstructions, plus the lab's check on training image 1."""
    n = len(originals)
    fig = Figure(figsize=(n * 0.9 + 2.4, 2.4))
    grid = fig.add_gridspec(2, n + 2, width_ratios=[1] * n + [0.4, 1])
    for i in range(n):
        _show(fig.add_subplot(grid[0, i]), originals[i], "test" if i == 0 else None)
        _show(fig.add_subplot(grid[1, i]), recons[i], "recon." if i == 0 else None)
    _show(fig.add_subplot(grid[0, n + 1]), lab_original, "train[1]")
    _show(fig.add_subplot(grid[1, n + 1]), lab_recon, "recon.")
    if title:
        fig.suptitle(title, fontsize=9)
    _save(fig, path)


def image_grid(images, path, columns=8, title="") -> None:
    """A grid of images (e.g. decodings of z ~ N(0, I))."""
    rows = math.ceil(len(images) / columns)
    fig, axes = _subplots(rows, columns, (columns * 0.9, rows * 0.9 + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image in zip(axes.flat, images):
        _show(ax, image)
    if title:
        fig.suptitle(title, fontsize=9)
    _save(fig, path)


def side_by_side(images, titles, path, title="") -> None:
    """One row of labelled images (the lab's digit, reconstructed by several runs)."""
    fig, axes = _subplots(1, len(images), (1.8 * len(images), 2.3), squeeze=False)
    for ax, image, label in zip(axes[0], images, titles):
        _show(ax, image, textwrap.fill(label, 18))
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    _save(fig, path)


def latent_scatter(means, labels, path, title="") -> None:
    """Encoder means projected to 2-D by PCA, coloured by label (any number of classes:
    ten or fewer get tab10, up to twenty tab20, more a continuous map)."""
    xy = pca_2d(np.asarray(means, dtype=np.float64))
    labels = np.asarray(labels)
    classes = max(int(labels.max()) + 1, 10) if labels.size else 10
    cmap = "tab10" if classes <= 10 else "tab20" if classes <= 20 else "viridis"
    fig, ax = _subplots(1, 1, (5, 4.2))
    scatter = ax.scatter(xy[:, 0], xy[:, 1], c=labels, cmap=cmap, s=2, vmin=-0.5,
                         vmax=classes - 0.5)
    ticks = range(classes) if classes <= 20 else None
    fig.colorbar(scatter, ax=ax, ticks=ticks, label="digit" if classes == 10 else "label")
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title(title or "encoder means (PCA)", fontsize=9)
    fig.tight_layout()
    _save(fig, path)


def curves(history: dict, path, title="") -> None:
    """Left: loss terms per epoch (log scale). Right: KL weight, and active units on a twin axis."""
    epochs = np.asarray(history["epoch"])
    fig, (ax, right) = _subplots(1, 2, (9, 3.4))
    for key, style in (("loss", ":"), ("reconstruction_loss", "-"),
                       ("val_reconstruction_loss", "--"), ("kl_loss", "-")):
        if key in history:
            values = np.asarray(history[key], dtype=float)
            ax.plot(epochs, np.where(values > 0, values, np.nan), style, marker=".", label=key)
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_title("loss terms", fontsize=9)
    ax.legend(fontsize=7)
    right.plot(epochs, history["kl_weight"], color="black", marker=".", label="KL weight")
    right.set_ylim(-0.05, 1.05)
    right.set_ylabel("KL weight")
    right.set_xlabel("epoch")
    units = right.twinx()
    units.plot(epochs, history["active_units"], color="tab:purple", marker=".", label="active units")
    units.set_ylim(bottom=-0.5, top=max(float(np.max(history["active_units"])), 1.0) * 1.1)
    units.set_ylabel("active units", color="tab:purple")
    right.set_title("KL weight and active units", fontsize=9)
    for a in (ax, right):
        a.xaxis.get_major_locator().set_params(integer=True)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    _save(fig, path)


def annealing_curves(histories, labels, path) -> None:
    """Per epoch, one line per run: reconstruction loss, KL weight, active units."""
    fig, axes = _subplots(1, 3, (11, 3.2))
    panels = (("reconstruction_loss", "reconstruction loss (MSE)", True),
              ("kl_weight", "KL weight", False), ("active_units", "active units", False))
    for ax, (key, name, log) in zip(axes, panels):
        for history, label in zip(histories, labels):
            ax.plot(history["epoch"], history[key], marker=".", label=label)
        ax.set_xlabel("epoch")
        ax.set_title(name, fontsize=9)
        ax.xaxis.get_major_locator().set_params(integer=True)
        if log:
            ax.set_yscale("log")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)


def prior_name(vae) -> str:
    """What ``prior_samples`` draws z from, for a figure's title."""
    components = getattr(vae.sampling, "components", 0)
    layers = latents.layer_count(vae.sampling)
    if components:
        return f"z from the VampPrior ({components} pseudo-inputs)"
    if layers > 1:
        return f"z{layers} ~ N(0, I), then down to z1"
    return "z ~ N(0, I)"


def prior_samples(vae, seed: int, n: int = SAMPLES, label: int | None = None):
    """``(images, columns)``: decodings of draws from the prior (``z ~ N(0, I)``; top-down
    through a hierarchy; a VampPrior's mixture: :meth:`VAE.prior_draws`). A conditional
    VAE without a ``label`` gets one row per class (the same z in every row), else all of
    ``label``."""
    rng = np.random.default_rng(seed)
    if not vae.classes:
        return vae.to_pixels(vae.decode(vae.prior_draws(n, rng))), 8
    if label is not None:
        z = vae.prior_draws(n, rng)
        return vae.to_pixels(vae.decode(z, labels=np.full(n, label))), 8
    per_row = max(1, min(10, n // vae.classes)) if n >= vae.classes else 1
    z = np.tile(vae.prior_draws(per_row, rng), (vae.classes, 1))
    labels = np.repeat(np.arange(vae.classes), per_row)
    return vae.to_pixels(vae.decode(z, labels=labels)), per_row


def write_run_figures(run_dir, vae, dataset, arrays: dict, history: dict,
                      config: TrainConfig) -> None:
    """A run's four figures: reconstructions, prior samples, the latent map, the curves.

    ``arrays`` are :func:`vaelab.analysis.evaluation.test_metrics`' arrays; ``history`` is the
    run's ``history.csv`` as read back (with its ``epoch`` column).
    """
    run_dir = Path(run_dir)
    label = f"KL scale {format_scale(config.effective_kl_scale(dataset.input_dim))}"
    if config.free_bits:
        label += f", free bits {format_free_bits(config.free_bits)}"
    if config.objective != "elbo":
        label += f", {config.objective}"
    label += f", {config.epochs} epoch(s)"
    reconstructions(dataset.x_test[:GRID], arrays["recons"][:GRID],
                    dataset.x_train[config.lab_image], arrays["lab_recon"],
                    run_dir / "reconstructions.png",
                    title=f"reconstructions from the encoder mean ({label})")
    images, columns = prior_samples(vae, config.seed)
    what = "one row per class, " if vae.classes else ""
    image_grid(images, run_dir / "samples.png", columns=columns,
               title=f"decoded {prior_name(vae)} ({what}{label})")
    latent_scatter(arrays["means"], dataset.y_test, run_dir / "latent.png",
                   title=f"test-set encoder means, PCA ({label})")
    curves(history, run_dir / "curves.png", title=label)


def write_samples(run_dir, out=None, n: int = 64, label: int | None = None,
                  seed: int = 0) -> Path:
    """``vaelab sample``: decodings of ``n`` prior draws of a finished run, as a PNG grid
    (a conditional run: all of class ``label``, or one row per class without it)."""
    run_dir = Path(run_dir)
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        raise UsageError(f"--n must be a positive integer, received {n!r}")
    if n > MAX_SAMPLES:
        raise UsageError(f"--n must be at most {MAX_SAMPLES} (a grid of {MAX_SAMPLES // 8} rows "
                         f"of 8 images), received {n}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise UsageError(f"--seed must be an integer from 0 to {MAX_SEED}, received {seed!r}")
    with runs.open_run(run_dir, shared=out is not None,
                       hint="; --out writes the file elsewhere") as config:
        vae = runs.load_vae(run_dir, config=config)
        if label is not None and not vae.classes:
            raise UsageError(f"{run_dir} is not a conditional run; --label does not apply")
        if label is not None and not 0 <= label < vae.classes:
            raise UsageError(f"--label {label} is not a class of {run_dir} (trained on classes "
                             f"0 … {vae.classes - 1})")
        name = f"samples-{'class-' + str(label) if label is not None else 'prior'}.png"
        out = runs.check_output_file(out) if out is not None else run_dir / name
        images, columns = prior_samples(vae, seed, n, label)
        if len(images) != n:  # one row per class: said, not silently
            print(f"vaelab: a conditional run without --label draws one row per class: "
                  f"{vae.classes} rows of {columns} ({len(images)} images, not {n}; at most 10 "
                  f"a row)", file=sys.stderr)
        what = (f"class {label}" if label is not None
                else "one row per class" if vae.classes else prior_name(vae))
        image_grid(images, out, columns=columns, title=f"{run_dir.name}: {len(images)} samples, {what}")
    return out


def ablation_bars(titles: list[str], active: list[list[float]], mse: list[list[float]],
                  latent: int, path, title: str = "") -> None:
    """Two panels, one bar per method: active units and test MSE, the bar at the mean over
    seeds, the error bar ± one sample standard deviation, each seed a dot."""
    fig, axes = _subplots(1, 2, (12, 0.45 * len(titles) + 1.8))
    rows = np.arange(len(titles))
    for ax, values, label in ((axes[0], active, f"active units (of {latent})"),
                              (axes[1], mse, "test MSE")):
        means = [float(np.mean(v)) for v in values]
        stds = [float(np.std(v, ddof=1)) if len(v) > 1 else 0.0 for v in values]
        ax.barh(rows, means, xerr=stds, color="#9ab", ecolor="#333", capsize=3)
        for row, seeds in zip(rows, values):
            ax.plot(seeds, [row] * len(seeds), "o", color="#c33", markersize=3)
        ax.set_yticks(rows, titles if ax is axes[0] else [""] * len(titles))
        ax.invert_yaxis()
        ax.set_xlabel(label)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    _save(fig, path)
