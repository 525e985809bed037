"""Where the conv VAE's time goes, layer by layer: Keras' layers against those vaelab uses.

    python benchmarks/conv_layers.py [--batches 32 256] [--repeats 30] [--json out.json]

For each convolution of the conv VAE on 28 × 28 images (encoder: 1→32 and 32→64 channels
at stride 2; decoder: transposed 64→64 and 64→32 at stride 2, then 32→1 at stride 1), the
time of one batch forward, and forward plus backward (the gradients of a random projection
of the output with respect to the weights, and to the input for every layer but the first,
as training needs), each compiled alone with ``jax.jit``, under JAX on this machine's CPU.
Keras' layer and the one the conv VAE uses (:class:`vaelab.core.convolutions.PatchConv2D`
in the encoder, :class:`~vaelab.core.convolutions.SubPixelConv2DTranspose` for the stride-2
transposed layers, Keras' own for the stride-1 output) are measured interleaved in one
run, with the same weights; the milliseconds are medians of ``--repeats`` calls, and
"per epoch" multiplies by the batches of 10 000 images.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from vaelab.core.convolutions import PatchConv2D, SubPixelConv2DTranspose  # noqa: E402

IMAGES = 10_000
LAYERS = [  # name, Keras' class, vaelab's, input (side, channels), filters, stride, input grad
    ("encoder conv 1→32, 28→14", keras.layers.Conv2D, PatchConv2D, (28, 1), 32, 2, False),
    ("encoder conv 32→64, 14→7", keras.layers.Conv2D, PatchConv2D, (14, 32), 64, 2, True),
    ("decoder convT 64→64, 7→14", keras.layers.Conv2DTranspose, SubPixelConv2DTranspose,
     (7, 64), 64, 2, True),
    ("decoder convT 64→32, 14→28", keras.layers.Conv2DTranspose, SubPixelConv2DTranspose,
     (14, 64), 32, 2, True),
    ("decoder convT 32→1, 28 (stride 1)", keras.layers.Conv2DTranspose,
     keras.layers.Conv2DTranspose, (28, 32), 1, 1, True),
]


def compiled(layer, shape, input_grad: bool):
    """Forward, and forward + backward, of ``layer`` as jitted functions of (weights, x,
    projection). The projection is an argument: captured, it would be a constant of the
    compiled program and XLA could fold part of the backward pass away at compile time."""

    def forward(weights, x):
        return layer.stateless_call(weights, [], x)[0]

    def loss(weights, x, projection):
        return (forward(weights, x) * projection).sum()

    grad = jax.grad(loss, argnums=(0, 1) if input_grad else 0)
    return jax.jit(forward), jax.jit(grad)


def median_ms(fn, *args, repeats: int) -> float:
    jax.block_until_ready(fn(*args))  # compile
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def measure(batch: int, repeats: int) -> list[dict]:
    rows = []
    rng = np.random.default_rng(1)
    for name, keras_class, fast_class, (side, channels), filters, stride, input_grad in LAYERS:
        shape = (batch, side, side, channels)
        x = jax.numpy.asarray(rng.normal(size=shape), "float32")
        pair = {}
        projection = None
        for label, cls in (("keras", keras_class), ("vaelab", fast_class)):
            layer = cls(filters, 3, strides=stride, padding="same", activation="relu")
            layer.build(shape)
            if label == "vaelab":
                layer.set_weights(pair["keras"][0].get_weights())
            pair[label] = (layer, *compiled(layer, shape, input_grad))
            if projection is None:
                projection = jax.numpy.asarray(
                    rng.normal(size=layer.compute_output_shape(shape)), "float32")
        row = {"layer": name, "batch": batch}
        for _ in range(2):  # interleaved: Keras, vaelab, Keras, vaelab; the last pair counts
            for label, (layer, forward, backward) in pair.items():
                weights = [v.value for v in layer.trainable_variables]
                row[f"{label}_forward_ms"] = median_ms(forward, weights, x, repeats=repeats)
                row[f"{label}_backward_ms"] = median_ms(backward, weights, x, projection,
                                                        repeats=repeats)
        steps = -(-IMAGES // batch)
        for label in pair:
            row[f"{label}_epoch_s"] = steps * row[f"{label}_backward_ms"] / 1000
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[32, 256])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--json")
    args = parser.parse_args()
    rows = [row for batch in args.batches for row in measure(batch, args.repeats)]
    print(f"{'layer':36} {'batch':>5} {'fwd keras':>10} {'fwd vaelab':>10} "
          f"{'f+b keras':>10} {'f+b vaelab':>10} {'ratio':>6} {'keras s/epoch':>13}")
    for r in rows:
        print(f"{r['layer']:36} {r['batch']:>5} {r['keras_forward_ms']:>8.2f}ms "
              f"{r['vaelab_forward_ms']:>8.2f}ms {r['keras_backward_ms']:>8.2f}ms "
              f"{r['vaelab_backward_ms']:>8.2f}ms "
              f"{r['keras_backward_ms'] / r['vaelab_backward_ms']:>6.1f} "
              f"{r['keras_epoch_s']:>13.1f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": os.cpu_count(), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
