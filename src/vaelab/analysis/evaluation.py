"""Evaluating a trained VAE on its test set.

``test_metrics`` gives the numbers every run records in ``metrics.json`` (test MSE,
KL, active units, output std, the collapse verdict). ``evaluate`` is ``vaelab
evaluate``: it writes ``evaluation.json`` into a finished run folder, with the ELBO
and the IWAE estimate of −log p(x) (with k and standard errors, nats per test image),
the KL, the KL per latent dimension, active units and the mutual information I(x; z).

For a Gaussian decoder the likelihood uses the variance the training objective
implies, σ² = D·β·kl_scale/2 (σ² = ½ for the lab's 784 pixels, KL/784 and β = 1; see
``vaelab.core.likelihoods.Gaussian.variance``); its values are densities of continuous
pixels and are not comparable with Bernoulli likelihoods of binarized images.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import keras
import numpy as np
from keras import ops

from vaelab import signals
from vaelab.analysis import bounds, layers, metrics
from vaelab.core.config import TrainConfig, UsageError
from vaelab.core.latents import LatentStack
from vaelab.store import runs


def test_metrics(vae, dataset, lab_image: int) -> tuple[dict, dict]:
    """The run's test metrics, and the arrays its figures are drawn from.

    Returns ``(values, arrays)``: ``values`` for ``metrics.json``; ``arrays`` holds the
    test set's encoder ``means`` and ``log_vars`` ``(n, latent)``, the reconstructions
    from the means as pixels ``recons`` ``(n, D)`` and ``lab_recon``, training image
    ``lab_image`` reconstructed.
    """
    labels = dataset.y_test if vae.classes else None
    means, log_vars = vae.encode(dataset.x_test, labels=labels)
    recons = vae.to_pixels(vae.decode(means, labels=labels))
    n_active = metrics.active_units(means)
    kl = float(metrics.kl_per_dimension(means, log_vars).sum())
    per_layer = None
    if isinstance(vae.sampling, LatentStack):
        per_layer = layers.layer_statistics(vae, dataset.x_test, samples=LAYER_SAMPLES,
                                            labels=labels)
        n_active = sum(layer["active_units"] for layer in per_layer)
        kl = sum(layer["kl"] for layer in per_layer)
        recons = vae.to_pixels(vae.decode(per_layer[0]["means"], labels=labels))
    std = metrics.output_std(recons)
    values = {
        "test_mse": float(np.mean(np.square(recons - dataset.x_test))),
        "test_kl": kl,
        "active_units": n_active,
        "output_std": std,
        "collapsed": metrics.is_collapsed(n_active, std),
    }
    if per_layer is not None:
        values["layers"] = _layer_values(per_layer)
    lab = slice(lab_image, lab_image + 1)
    lab_labels = dataset.y_train[lab] if vae.classes else None
    lab_mean, lab_log_var = vae.encode(dataset.x_train[lab], labels=lab_labels)
    if isinstance(vae.sampling, LatentStack):  # after a flow: the flow of the mean
        lab_mean = np.asarray(ops.convert_to_numpy(vae.sampling.mean_point(lab_mean,
                                                                            lab_log_var)))
    arrays = {"means": means, "log_vars": log_vars, "recons": recons,
              "lab_recon": vae.to_pixels(vae.decode(lab_mean, labels=lab_labels))[0]}
    return values, arrays


def _layer_values(per_layer: list[dict]) -> list[dict]:
    """What ``metrics.json`` and ``evaluation.json`` keep of :func:`layers.layer_statistics`."""
    return [{key: layer[key] for key in ("latent", "active_units", "kl", "kl_per_dimension")}
            for layer in per_layer]


LAYER_SAMPLES = 100       # draws per image behind each layer's posterior means and KL
MAX_K = 5000              # importance samples per image without --force
SECONDS_PER_IMAGE = 0.025  # measured at k = 5000 for the lab's model on a 2-core CPU


def estimated_seconds(k: int, images: int) -> float:
    """IWAE's time, from the lab model's measured pace (linear in k and in images)."""
    return SECONDS_PER_IMAGE * images * k / MAX_K


def evaluate(run_dir, k: int = 5000, data_dir: str | None = None, verbose: bool = True,
             test_size: int | None = None, seed: int = 0, force: bool = False) -> dict:
    """Evaluate a complete run on its test set and write ``evaluation.json``
    (holding the run folder's lock meanwhile)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UsageError(f"run folder {run_dir} does not exist")
    with runs.open_run(run_dir) as config:
        return _evaluate(run_dir, config, k, data_dir, verbose, test_size, seed, force)


def _evaluate(run_dir: Path, config: TrainConfig, k: int, data_dir: str | None, verbose: bool,
              test_size: int | None, seed: int, force: bool) -> dict:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise UsageError(f"--k must be a positive integer, received {k!r}")
    if test_size is not None and (isinstance(test_size, bool) or not isinstance(test_size, int)
                                  or test_size < 1):
        raise UsageError(f"--test-size must be a positive integer, received {test_size!r}")
    full = runs.load_run_data(run_dir, config, data_dir, check=False)
    vae = runs.load_vae(run_dir, full.input_dim, config)  # the image size: the clearer message
    runs.check_run_data(run_dir, full)
    dataset = full.select(None, config.test_size if test_size is None else test_size,
                          config.model_likelihood, config.test_binarization_seed)
    if test_size is not None and test_size > (config.test_size or test_size):
        print(f"vaelab: evaluating on the first {test_size} test images; the run itself "
              f"validated on its first {config.test_size}", file=sys.stderr)
    x = dataset.x_test
    if k > MAX_K and not force:
        minutes = estimated_seconds(k, len(x)) / 60
        raise UsageError(f"--k {k} is above {MAX_K}: about {minutes:.0f} min for {len(x)} test "
                         f"images on a 2-core CPU (the lab's model); pass --force to run it")
    likelihood = vae.likelihood
    variance = config.decoder_variance(dataset.input_dim)
    started = time.perf_counter()
    labels = dataset.y_test if vae.classes else None
    means, log_vars = vae.encode(x, labels=labels)
    kl_dims = metrics.kl_per_dimension(means, log_vars)
    active = metrics.active_units(means)
    mutual_information = metrics.mutual_information(vae.encoder, vae.with_labels(x, labels),
                                                    seed=seed)
    per_layer = None
    if isinstance(vae.sampling, LatentStack):
        per_layer = layers.layer_statistics(vae, x, samples=LAYER_SAMPLES, seed=seed,
                                            labels=labels)
        active = sum(layer["active_units"] for layer in per_layer)
        if vae.sampling.flow_steps:  # the encoder's Gaussian is not the flow's posterior
            mutual_information = None
    elbo, elbo_se = bounds.elbo(vae, x, likelihood, variance, seed=seed, labels=labels)
    bar = keras.utils.Progbar(len(x), unit_name="image") if verbose else None
    if verbose:
        print(f"IWAE with k={k} on {len(x)} test images")
    nll, nll_se, used = bounds.iwae_nll(vae, x, k, likelihood, variance, seed=seed,
                                        progress=bar.update if bar else None, labels=labels)
    values = {
        "likelihood": likelihood.name,
        "decoder_variance": variance,
        "test_images": int(len(x)),
        "seed": seed,
        "data": full.identity,
        "elbo": elbo, "elbo_se": elbo_se,
        "iwae_nll": nll, "iwae_nll_se": nll_se, "k": used,
        "kl": (float(kl_dims.sum()) if per_layer is None
               else sum(layer["kl"] for layer in per_layer)),
        "kl_per_dimension": ([float(v) for v in kl_dims] if per_layer is None
                             else per_layer[0]["kl_per_dimension"]),
        "active_units": active,
        "mutual_information": mutual_information,
        "seconds": round(time.perf_counter() - started, 2),
    }
    if per_layer is not None:
        values["layers"] = _layer_values(per_layer)
        values["layer_samples"] = LAYER_SAMPLES
    signals.check()  # a Ctrl-C whose exception was lost: no evaluation written
    runs.write_json(run_dir / "evaluation.json", values)
    if verbose:
        print(f"{run_dir}: ELBO {elbo:.2f} ± {elbo_se:.2f}, IWAE NLL {nll:.2f} ± {nll_se:.2f} "
              f"nats (k={used}), KL {values['kl']:.2f}, {values['active_units']} active units"
              + ("" if mutual_information is None else f", MI {mutual_information:.3f} nats"))
    return values
