"""Training runs: the settings checked (``preflight``), each epoch's batches (``feeding``), the
one ``fit`` call (``fit``) with its callbacks and checkpoints, Ctrl-C (``interrupts``), and
the recipe that writes run folders (``trainer``: ``train``, ``train_group``, ``resume``;
``population``: ``train_many``).

``train``, ``resume``, ``train_group``, ``train_many`` and ``Run`` are importable from here
(``from vaelab.training import train``); they load on first use.
"""

import importlib

_EXPORTS = {"train": "trainer", "resume": "trainer", "train_group": "trainer",
            "train_many": "population", "Run": "population"}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"vaelab.training.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'vaelab.training' has no attribute {name!r}")
