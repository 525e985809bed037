"""Each epoch's training arrays, drawn by vaelab: the order of the images and their binarization.

Keras' ``fit(shuffle=True)`` draws its order from a generator Keras does not promise
(NumPy's global one in Keras 3.15, ``default_rng(epoch)`` on its main branch), so every
vaelab fit is ``fit(shuffle=False)`` on arrays that :class:`Feed` refills before each
epoch from generators of its own. Nothing here touches NumPy's global random state.

For 0-based epoch ``e`` of a run seeded ``s`` (each member of a population with its own
``s``):

- the order is ``RandomState([s, e]).permutation(n)`` (:func:`epoch_order`): the
  permutation ``fit(shuffle=True)`` drew in earlier vaelab versions, which seeded NumPy's
  global generator with ``[s, e]``, so their numbers are kept. NumPy keeps
  ``RandomState``'s stream fixed (NEP 19), so no upgrade can move it;
- a Bernoulli model's images are binarized afresh, ``uniform < gray`` with the uniforms
  from ``default_rng([s, e, 1])`` over the whole training set, before they are ordered;
- in a job of several processes each process takes its rows of every global batch
  (:func:`vaelab.dist.cluster.local_rows`), so together they train on the one-process batches.
"""

from __future__ import annotations

import keras
import numpy as np

from vaelab.core.likelihoods import binarize
from vaelab.dist import cluster


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The order of the ``n`` training images in 0-based epoch ``epoch`` of a run seeded ``seed``:
    ``(n,)`` int indices."""
    return np.random.RandomState([seed, epoch]).permutation(n)


class Feed(keras.callbacks.Callback):
    """Before each epoch, each member's training arrays, refilled in place (see the module).

    Args:
        sources: the full arrays: the images ``(n, ...)`` first, then any other input or
            target with the same rows (one-hot labels).
        seeds: one run seed per member.
        binarized: draw binary images from the gray ones each epoch (Bernoulli likelihood).
        batch_size: the global batch, which a job of several processes splits.

    Attributes:
        arrays: per member, the arrays to give ``fit`` (shaped as ``sources``, floats as
            Keras' ``floatx``; in a job of ``P`` processes ``n // P`` rows each). ``fit``
            reads them batch by batch, so refilling them in place reaches the next epoch
            (:mod:`vaelab.core.keras_seam`, assumption 6).
    """

    def __init__(self, sources: list[np.ndarray], seeds: list[int], *, binarized: bool = False,
                 batch_size: int = 32):
        super().__init__()
        floatx = keras.config.floatx()  # fit would cast (copy) other floats and miss the refills
        self.sources = [a.astype(floatx) if np.issubdtype(a.dtype, np.floating)
                        and a.dtype != floatx else a for a in sources]
        self.seeds, self.binarized = list(seeds), binarized
        self.batch_size = batch_size
        self.count, self.index = cluster.process_count(), cluster.process_index()
        rows = len(self.sources[0]) // self.count
        self.arrays = [[np.empty((rows, *a.shape[1:]), a.dtype) for a in self.sources]
                       for _ in self.seeds]
        self._gray = None if not binarized else np.empty_like(self.sources[0])

    def on_epoch_begin(self, epoch, logs=None):
        self.fill(epoch)

    def fill(self, epoch: int) -> None:
        """Member arrays for 0-based ``epoch``."""
        n = len(self.sources[0])
        for seed, arrays in zip(self.seeds, self.arrays, strict=True):
            rows = epoch_order(seed, epoch, n)
            if self.count > 1:
                rows = cluster.local_rows(n, self.batch_size, self.count, self.index, rows)
            images = self.sources[0]
            if self.binarized:
                images = binarize(images, np.random.default_rng([seed, epoch, 1]), out=self._gray)
            for source, target in zip([images, *self.sources[1:]], arrays, strict=True):
                np.take(source, rows, axis=0, out=target)

    def inputs(self, member: int):
        """Member ``member``'s arrays as ``fit`` takes one input: an array, or a list."""
        arrays = self.arrays[member]
        return arrays[0] if len(arrays) == 1 else arrays
