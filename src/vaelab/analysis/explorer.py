"""``explorer.html``: a self-contained page to move through a trained VAE's latent space.

The page embeds the encoder's and decoder's weights (base64 float32) and runs them in
plain JavaScript (``resources/explorer_core.js``, in the page ``resources/explorer.html``; a dense layer is a few lines, so no library is
needed and the page works offline). It shows: one slider per latent dimension, ordered
by KL (most informative first, with its KL and whether it is active) and a "sample
from the prior" button, with the decoded image; a canvas to draw a digit, which is
encoded, reconstructed and placed on the 2-D PCA map of the test set's encoder means
(the same projection as ``latent.png``); and interpolation between two test images.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import keras
import numpy as np
from keras import ops

from vaelab.analysis import layers, metrics
from vaelab.core.config import ACTIVATIONS, UsageError
from vaelab.core.latents import LatentStack
from vaelab.paths import RESOURCES
from vaelab.store import runs

CORE_JS = RESOURCES / "explorer_core.js"
PAGE = RESOURCES / "explorer.html"
MAP_POINTS = 2000      # test points drawn on the map
INTERPOLATION = 12     # test images offered for interpolation


def _b64(array) -> str:
    return base64.b64encode(np.asarray(array, dtype="<f4").tobytes()).decode("ascii")


def _activation(layer) -> str:
    activation = getattr(layer, "activation", None)
    name = keras.activations.serialize(activation) if activation is not None else "linear"
    if name not in ACTIVATIONS:
        raise UsageError(f"the explorer cannot run activation {name!r} of layer {layer.name!r}")
    return name


def _layer(layer) -> dict | None:
    """One layer as the page's JSON (``None``: a reshape, which changes nothing in the flat
    row-major arrays the page uses)."""
    if isinstance(layer, (keras.layers.Reshape, keras.layers.Flatten)):
        return None
    if isinstance(layer, keras.layers.Concatenate):
        return {"type": "concat_label"}
    kernel, bias = getattr(layer, "kernel", None), getattr(layer, "bias", None)
    if kernel is None or bias is None:
        raise UsageError(f"the explorer cannot run layer {layer.name!r} "
                         f"({type(layer).__name__})")
    spec = {"kernel": _b64(ops.convert_to_numpy(kernel)), "bias": _b64(ops.convert_to_numpy(bias)),
            "shape": list(kernel.shape), "activation": _activation(layer)}
    if isinstance(layer, (keras.layers.Conv2D, keras.layers.Conv2DTranspose)):
        transpose = isinstance(layer, keras.layers.Conv2DTranspose)
        if layer.padding != "same" or layer.data_format != "channels_last" or \
                tuple(layer.dilation_rate) != (1, 1):
            raise UsageError(f"the explorer runs 'same'-padded, channels-last convolutions; "
                             f"layer {layer.name!r} is not one")
        spec.update(type="conv2d_transpose" if transpose else "conv2d",
                    in_shape=[int(d) for d in layer.input.shape[1:]],
                    strides=[int(v) for v in layer.strides])
    elif len(kernel.shape) == 2:
        spec["type"] = "dense"
    else:
        raise UsageError(f"the explorer cannot run layer {layer.name!r} "
                         f"({type(layer).__name__})")
    return spec


def _chain(model) -> list[dict]:
    layers = [l for l in model.layers if not isinstance(l, keras.layers.InputLayer)]
    return [spec for spec in map(_layer, layers) if spec is not None]


def model_spec(vae) -> dict:
    """The weights the page needs: ``{"likelihood", "classes", "encoder": [trunk layers],
    "mean", "log_var", "decoder": [layers]}``; a layer is ``{type: dense | conv2d |
    conv2d_transpose | concat_label, …}``.

    The encoder must be a chain ending in two dense heads (mean, log-variance) and the
    decoder a chain (the page's forward passes are checked against Keras in
    ``tests/test_explorer.py``).
    """
    encoder = _chain(vae.encoder)
    if len(encoder) < 2 or any(spec["type"] != "dense" for spec in encoder[-2:]):
        raise UsageError("the explorer runs encoders that end in two dense heads "
                         "(mean and log-variance)")
    trunk, mean, log_var, decoder = encoder[:-2], encoder[-2], encoder[-1], _chain(vae.decoder)
    sampling = vae.sampling
    if isinstance(sampling, LatentStack) and sampling.upper:
        # The sliders are the top layer's: the encoder goes on through each upper posterior's
        # mean, the decoder starts with each lower prior's mean (no noise on the way).
        for hidden, (mean_head, log_var_head) in sampling.up_nets:
            trunk = [*trunk, mean, *map(_layer, hidden)]
            mean, log_var = _layer(mean_head), _layer(log_var_head)
        for hidden, (mean_head, _) in sampling.down_nets:
            decoder = [*map(_layer, hidden), _layer(mean_head), *decoder]
    return {"likelihood": vae.likelihood.name, "classes": vae.classes, "encoder": trunk,
            "mean": mean, "log_var": log_var, "decoder": decoder}


def _notes_and_prior(vae) -> tuple[str, dict | None]:
    """The page's line on what it shows of a richer latent model, and a VampPrior's
    components for its "sample from the prior" button."""
    sampling = vae.sampling
    if not isinstance(sampling, LatentStack):
        return "", None
    if sampling.upper:
        return (f"{sampling.layer_count} stochastic layers: the sliders move the top layer "
                f"(z{sampling.layer_count}, {sampling.top_dim} dimensions); each image decodes "
                f"the prior's mean path down to z1, without the lower layers' noise; a drawn "
                f"digit is placed by the posterior means up the layers."), None
    note = ("A flow or a mixture prior has no KL per dimension: each slider's KL is the "
            "encoder's Gaussian against N(0, I). ")
    if sampling.flow_steps:
        note = (f"IAF posterior ({sampling.flow_steps} steps): a drawn digit and the map use "
                f"the encoder's Gaussian mean before the flow. ")
    if not sampling.components:
        return note + "The prior is N(0, I).", None
    means, log_vars = (np.asarray(ops.convert_to_numpy(v), np.float64)
                       for v in vae.model.prior_components())
    return (note + f"VampPrior: 'Sample from the prior' draws from the mixture of the "
                   f"{sampling.components} pseudo-inputs' posteriors; the sliders span ±3."), {
        "means": _b64(means), "log_vars": _b64(log_vars), "components": int(means.shape[0])}


def explorer_data(vae, x_test, y_test, image_shape, encoded=None) -> dict:
    """Everything the page embeds: weights, per-dimension KL, the PCA map, test images.

    ``encoded``: the test set's ``(means, log_vars)`` when the caller has them already.
    """
    labels = y_test if vae.classes else None
    means, log_vars = encoded if encoded is not None else vae.encode(x_test, labels=labels)
    means, log_vars = np.asarray(means, np.float64), np.asarray(log_vars, np.float64)
    kl = metrics.kl_per_dimension(means, log_vars)
    note, prior = _notes_and_prior(vae)
    if isinstance(vae.sampling, LatentStack) and vae.sampling.upper:
        top = layers.layer_statistics(vae, x_test, labels=labels)[-1]
        means, kl = top["means"], np.asarray(top["kl_per_dimension"])

    center, components = metrics.principal_axes(means)
    projected = (means[:MAP_POINTS] - center) @ components.T
    images = np.round(np.asarray(x_test[:INTERPOLATION]) * 255).astype(np.uint8)
    if len(image_shape) != 2 or image_shape[0] != image_shape[1]:
        raise UsageError(f"the explorer draws square images, these are {image_shape}")
    return {
        "model": model_spec(vae),
        "kl": [float(v) for v in kl],
        "active": [bool(v) for v in metrics.active_dimensions(means)],
        "order": [int(i) for i in np.argsort(-kl, kind="stable")],
        "pca": {"center": center.tolist(), "components": components.tolist(),
                "points": np.round(projected, 4).tolist(),
                "labels": [int(v) for v in np.asarray(y_test)[:MAP_POINTS]]},
        "images": [base64.b64encode(image.tobytes()).decode("ascii") for image in images],
        "image_labels": [int(v) for v in np.asarray(y_test)[:INTERPOLATION]],
        "side": int(image_shape[0]),
        "note": note,
        "prior": prior,
    }


def render_html(data: dict, title: str) -> str:
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    return (PAGE.read_text(encoding="utf-8").replace("__TITLE__", html.escape(title))
            .replace("__CORE__", CORE_JS.read_text(encoding="utf-8"))
            .replace("__DATA__", payload))


def write_explorer(run_dir, vae=None, dataset=None, out=None, encoded=None,
                   data_dir: str | None = None) -> Path:
    """Write the explorer of a run (``out`` defaults to ``RUN_DIR/explorer.html``).

    ``vae`` and ``dataset`` (its test split as the run used it) are read from the run
    folder when not given; ``data_dir`` supplies the run's data from another folder.
    """
    run_dir = Path(run_dir)
    if out is not None:
        runs.check_output_file(out)
    if dataset is not None and vae is not None:  # a run being written (training holds its lock)
        return _write(run_dir, vae, dataset, out, encoded)
    with runs.open_run(run_dir, shared=out is not None,
                       hint="; --out writes the file elsewhere") as config:
        if dataset is None:
            dataset = runs.load_run_data(run_dir, config, data_dir).select(
                2, config.test_size, config.model_likelihood, config.test_binarization_seed)
        if vae is None:
            vae = runs.load_vae(run_dir, dataset.input_dim, config)
        return _write(run_dir, vae, dataset, out, encoded)


def _write(run_dir: Path, vae, dataset, out, encoded) -> Path:
    data = explorer_data(vae, dataset.x_test, dataset.y_test, dataset.image_shape, encoded)
    out = Path(out) if out is not None else run_dir / "explorer.html"
    runs.write_text(out, render_html(data, f"vaelab explorer: {run_dir.name}"))
    return out
