"""``vaelab evaluate``: likelihood bounds and latent diagnostics of a finished run.

Writes ``evaluation.json`` into the run folder: the ELBO and the IWAE estimate of
−log p(x) (with k and standard errors, nats per test image), the KL, the KL per
latent dimension, active units and the mutual information I(x; z).

For a Gaussian decoder the likelihood uses the variance the training objective
implies, σ² = D·kl_scale/2 (σ² = ½ for the lab's 784 pixels and KL/784; see
``TrainConfig.decoder_variance``); its values are densities of continuous pixels
and are not comparable with Bernoulli likelihoods of binarized images.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path


from vaelab import metrics, runs
from vaelab.config import UsageError
from vaelab.training import load_dataset, read_run_config


def load_run_model(run_dir: Path, input_dim: int):
    """The run's VAE (safe mode), checked against the data's image size."""
    import keras

    from vaelab.models import VAE

    model = keras.models.load_model(run_dir / "model.keras", safe_mode=True)
    if model.input_shape[-1] != input_dim:
        raise UsageError(f"the model in {run_dir} expects {model.input_shape[-1]} pixels per "
                         f"image, the data has {input_dim}")
    return VAE.from_model(model)


def evaluate(run_dir, k: int = 5000, data_dir: str | None = None, verbose: bool = True,
             test_size: int | None = None, seed: int = 0) -> dict:
    """Evaluate a complete run on its test set and write ``evaluation.json``."""
    import keras

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UsageError(f"run folder {run_dir} does not exist")
    config = read_run_config(run_dir)
    if not runs.is_complete(run_dir):
        raise UsageError(f"{run_dir} is an incomplete run (no finished metrics.json); "
                         f"finish it with: vaelab train --resume {run_dir}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise UsageError(f"--k must be a positive integer, received {k!r}")
    changes = {"train_size": 2}  # only the test images are needed
    if data_dir is not None:
        changes["data_dir"] = data_dir
    if test_size is not None:
        changes["test_size"] = test_size
    config = dataclasses.replace(config, batch_size=1, **changes)
    dataset = load_dataset(config)
    vae = load_run_model(run_dir, dataset.input_dim)
    x = dataset.x_test
    variance = config.decoder_variance(dataset.input_dim)
    started = time.perf_counter()
    means, log_vars, _ = vae.encoder.predict(x, batch_size=1000, verbose=0)
    kl_dims = metrics.kl_per_dimension(means, log_vars)
    elbo, elbo_se = metrics.elbo(vae, x, config.likelihood, variance, seed=seed)
    bar = keras.utils.Progbar(len(x), unit_name="image") if verbose else None
    if verbose:
        print(f"IWAE with k={k} on {len(x)} test images")
    nll, nll_se, used = metrics.iwae_nll(vae, x, k, config.likelihood, variance, seed=seed,
                                         progress=bar.update if bar else None)
    values = {
        "likelihood": config.likelihood,
        "decoder_variance": variance if config.likelihood == "gaussian" else None,
        "test_images": int(len(x)),
        "elbo": elbo, "elbo_se": elbo_se,
        "iwae_nll": nll, "iwae_nll_se": nll_se, "k": used,
        "kl": float(kl_dims.sum()),
        "kl_per_dimension": [float(v) for v in kl_dims],
        "active_units": metrics.active_units(means),
        "mutual_information": metrics.mutual_information(vae.encoder, x, seed=seed),
        "seconds": round(time.perf_counter() - started, 2),
    }
    runs.write_json(run_dir / "evaluation.json", values)
    if verbose:
        print(f"{run_dir}: ELBO {elbo:.2f} ± {elbo_se:.2f}, IWAE NLL {nll:.2f} ± {nll_se:.2f} "
              f"nats (k={used}), KL {values['kl']:.2f}, {values['active_units']} active units, "
              f"MI {values['mutual_information']:.3f} nats")
    return values
