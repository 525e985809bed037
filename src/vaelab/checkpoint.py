"""Per-epoch checkpoints of a run: what a resumed run needs, written atomically.

The checkpoint folder (``RUN_DIR/checkpoint``) holds ``epoch-<k>.keras`` (weights and
optimizer state) and ``state.json``, the one file that names it, with the epochs done,
the history rows so far and the sampling layers' seed-generator states.
"""

from __future__ import annotations

import math
from pathlib import Path

import keras
import numpy as np
from keras import ops

from vaelab import interrupts, runs
from vaelab.models import sampling_layers

FOLDER = runs.CHECKPOINT  # inside a run folder


class Checkpoint(keras.callbacks.Callback):
    """Saves everything a resumed run needs at each epoch end, atomically.

    In ``folder``: ``epoch-<k>.keras`` (weights and optimizer state) and
    ``state.json`` naming it, with the epochs done, the history rows so far and
    the sampling layers' seed-generator states (which ``model.save`` does not
    restore). The model file is written before ``state.json`` and older model
    files are removed after, so ``state.json`` always names a whole file.
    An epoch whose mean loss is not finite is not saved, nor one that a signal cut short.

    Args:
        folder: the checkpoint folder.
        history: the rows of the epochs already done (a resumed run's past).
    """

    def __init__(self, folder, history: dict | None = None):
        super().__init__()
        self.folder = Path(folder)
        self.history = {k: list(v) for k, v in (history or {}).items()}

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        if interrupts.pending() is not None:  # the epoch may have been cut short
            return
        if not all(math.isfinite(float(v)) for v in logs.values()):
            return
        done = epoch + 1
        for key, value in logs.items():
            self.history.setdefault(key, []).append(float(value))
        self.folder.mkdir(parents=True, exist_ok=True)
        model_file = f"epoch-{done}.keras"
        with runs.atomic_path(self.folder / model_file) as tmp:
            self.model.save(tmp)
        seeds = [ops.convert_to_numpy(layer.seed_generator.state.value).tolist()
                 for layer in sampling_layers(self.model)]
        runs.write_json(self.folder / "state.json", {
            "epochs_done": done, "model": model_file, "seed_states": seeds,
            "history": self.history})
        for old in self.folder.glob("epoch-*.keras"):
            if old.name != model_file:
                old.unlink()


def restore_seed_states(model: keras.Model, states: list) -> None:
    """Put saved seed-generator states back into the model's sampling layers."""
    layers = sampling_layers(model)
    if len(layers) != len(states):
        raise ValueError(f"checkpoint has {len(states)} seed states, model has {len(layers)} "
                         f"sampling layers")
    for layer, state in zip(layers, states):
        variable = layer.seed_generator.state
        variable.assign(np.asarray(state, dtype=variable.dtype))


def read_state(run_dir) -> dict | None:
    """The checkpoint's ``state.json``, or ``None`` when no epoch has been checkpointed."""
    path = Path(run_dir) / FOLDER / "state.json"
    return runs.read_json(path) if path.exists() else None


def load_checkpoint_model(run_dir, state: dict) -> keras.Model:
    return keras.models.load_model(Path(run_dir) / FOLDER / state["model"], safe_mode=True)
