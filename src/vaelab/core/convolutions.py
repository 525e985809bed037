"""Keras' convolution layers computed through matrix products: the same functions of the
same weights, without XLA's slow convolution paths on a CPU.

XLA on a CPU computes ``lax.conv_transpose`` over the input dilated by the stride
(``lhs_dilation``), and the gradient of that is slow: the conv VAE's two stride-2
``Conv2DTranspose`` layers took 26.7 and 57.8 ms a batch of 32 forward and backward, 96 %
of the model's convolution time (``benchmarks/conv_layers.py``, ``docs/performance.md``).
Its gradients of ordinary convolutions, too, run well below the rate it reaches on a
matrix product of the same arithmetic.

:class:`SubPixelConv2DTranspose` computes exactly Keras' transposed convolution another
way: a stride-``s`` transposed convolution is ``s²`` interleaved stride-1 correlations of
the input, one per output phase (Shi et al. 2016's sub-pixel convolution). They run as one
stride-1 convolution whose kernel holds every phase's taps (zeros where a phase has none),
itself computed as the input's shifted slices side by side (its patches) times that kernel
as a matrix, followed by a depth-to-space rearrangement. In one dimension, for stride
``s``, kernel size ``k`` and Keras' "same" padding, ``y[s·i + t − P] += x[i] · w[t]`` with
``P = (k − s) // 2`` and outputs ``0 … s·n − 1``: output ``o = s·m + r`` takes the taps
``t ≡ r + P (mod s)``, at input ``i = m + (r + P − t) / s``.

:class:`PatchConv2D` computes Keras' ``Conv2D`` as its strided patches times the kernel.

Both subclass Keras' layers with the same weights, names and configuration, so
``isinstance`` checks, weight files and summaries are unchanged; any other setting (see
each class) falls back to Keras' own computation. Everything is ``keras.ops``, so the torch
backend can run the same code; it does not by default (:func:`matmul_form`): PyTorch's own
convolutions on a CPU (oneDNN) were faster than these products under Keras' torch backend
(the conv VAE's epoch 7.2 s against 11.6 s at batch 32), while under JAX these products
made it 1.4× faster than Keras on torch at batch 32, and about as fast at 256
(``docs/performance.md``).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops


def matmul_form() -> bool:
    """Whether the layers below compute through matrix products (under JAX) rather than
    through the backend's own convolutions (any other backend)."""
    return keras.backend.backend() == "jax"


def _phase_taps(k: int, s: int) -> tuple[np.ndarray, int, int]:
    """For the transposed convolution: ``taps[r, j]``, the kernel tap that output phase
    ``r`` applies to input offset ``dmin + j`` (``k``, an index of a zero tap, where none),
    and the offsets' range ``dmin … dmax``."""
    pad = (k - s) // 2
    offsets = {(r, t): (r + pad - t) // s for r in range(s) for t in range(k)
               if (r + pad - t) % s == 0}
    dmin, dmax = min(offsets.values()), max(offsets.values())
    taps = np.full((s, dmax - dmin + 1), k, dtype=np.int32)
    for (r, t), d in offsets.items():
        taps[r, d - dmin] = t
    return taps, dmin, dmax


def _with_zero_taps(kernel):
    """``kernel (kh, kw, …)`` with one more tap of zeros at index ``kh`` and ``kw``."""
    return ops.pad(kernel, [(0, 1), (0, 1)] + [(0, 0)] * (len(kernel.shape) - 2))


def _valid_conv_by_patches(inputs, kernel, strides):
    """A "valid" convolution of ``inputs (B, h, w, c)`` with ``kernel (kh, kw, c, f)`` at
    ``strides``, as the input's strided shifted slices side by side (its patches,
    ``(B, oh, ow, kh·kw·c)``) times the kernel as one ``(kh·kw·c, f)`` matrix."""
    kh, kw, channels, filters = kernel.shape
    (sh, sw), h, w = strides, inputs.shape[1], inputs.shape[2]
    oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
    patches = ops.concatenate(
        [inputs[:, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw, :]
         for i in range(kh) for j in range(kw)], axis=-1)
    outputs = ops.matmul(ops.reshape(patches, (-1, kh * kw * channels)),
                         ops.reshape(kernel, (kh * kw * channels, filters)))
    return ops.reshape(outputs, (-1, oh, ow, filters))


@keras.saving.register_keras_serializable(package="vaelab")
class SubPixelConv2DTranspose(keras.layers.Conv2DTranspose):
    """``keras.layers.Conv2DTranspose``, computed as one stride-1 convolution and a
    depth-to-space step when ``padding="same"``, channels last, no dilation or output
    padding, and the same stride ``s > 1`` on both axes, at most the kernel's size (see the
    module's notes); otherwise Keras' own computation."""

    def _sub_pixel(self) -> bool:
        (sh, sw), (kh, kw) = tuple(self.strides), tuple(self.kernel_size)
        return (self.padding == "same" and self.data_format == "channels_last"
                and tuple(self.dilation_rate) == (1, 1) and self.output_padding is None
                and sh == sw > 1 and min(kh, kw) >= sh)

    def call(self, inputs):
        if not (self._sub_pixel() and matmul_form()):
            return super().call(inputs)
        (kh, kw), f, s = self.kernel_size, self.filters, self.strides[0]
        rows, rmin, rmax = _phase_taps(kh, s)
        cols, cmin, cmax = _phase_taps(kw, s)
        # (kh+1, kw+1, out, in): Keras' transposed kernel with a zero tap on each axis.
        kernel = _with_zero_taps(self.kernel)
        kernel = ops.take(kernel, ops.convert_to_tensor(rows), axis=0)  # (s, span_h, …)
        kernel = ops.take(kernel, ops.convert_to_tensor(cols), axis=2)  # (s, sh, s, sw, f, c)
        span_h, span_w = rows.shape[1], cols.shape[1]
        channels = kernel.shape[-1]
        kernel = ops.transpose(kernel, (1, 3, 5, 0, 2, 4))  # (sh, sw, c, rh, rw, f)
        kernel = ops.reshape(kernel, (span_h, span_w, channels, s * s * f))
        padded = ops.pad(inputs, [(0, 0), (-rmin, rmax), (-cmin, cmax), (0, 0)])
        phases = _valid_conv_by_patches(padded, kernel, (1, 1))  # (B, h, w, s·s·f)
        h, w = inputs.shape[1], inputs.shape[2]
        phases = ops.reshape(phases, (-1, h, w, s, s, f))
        outputs = ops.reshape(ops.transpose(phases, (0, 1, 3, 2, 4, 5)), (-1, h * s, w * s, f))
        if self.use_bias:
            outputs = outputs + self.bias
        return self.activation(outputs)


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """Keras' (TensorFlow's) "same" padding of one axis: the excess over the output's
    needs, one more at the end where it is odd."""
    total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


@keras.saving.register_keras_serializable(package="vaelab")
class PatchConv2D(keras.layers.Conv2D):
    """``keras.layers.Conv2D``, computed as its patches (the input's shifted, strided
    slices side by side) times the kernel as one matrix, when channels last, without
    dilation or groups; otherwise Keras' own computation.

    The same function of the same weights. XLA's CPU convolution gradients ran slower than
    this matrix product (the conv VAE's second encoder convolution, forward and backward:
    1.04 against 0.77 ms a batch of 32, 11.9 against 7.7 ms at 256; ``docs/performance.md``).
    """

    def _by_patches(self) -> bool:
        return (self.data_format == "channels_last" and tuple(self.dilation_rate) == (1, 1)
                and self.groups == 1 and self.padding in ("same", "valid"))

    def call(self, inputs):
        if not (self._by_patches() and matmul_form()):
            return super().call(inputs)
        (kh, kw), strides = self.kernel_size, tuple(self.strides)
        if self.padding == "same":
            rows = _same_padding(inputs.shape[1], kh, strides[0])
            cols = _same_padding(inputs.shape[2], kw, strides[1])
            inputs = ops.pad(inputs, [(0, 0), rows, cols, (0, 0)])
        outputs = _valid_conv_by_patches(inputs, self.kernel, strides)
        if self.use_bias:
            outputs = outputs + self.bias
        return self.activation(outputs)


# Each of these computes its Keras base layer's function of the same weights with the same
# settings: a model saved with either is the same model.
KERAS_EQUIVALENTS = {SubPixelConv2DTranspose.__name__: "Conv2DTranspose",
                     PatchConv2D.__name__: "Conv2D"}
