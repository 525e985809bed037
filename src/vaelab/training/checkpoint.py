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

from vaelab import signals
from vaelab.core import keras_seam
from vaelab.core.config import UsageError
from vaelab.core.models import sampling_layers
from vaelab.dist import cluster
from vaelab.store import runs

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
        prepare: called before each save (a population member first takes its optimizer
            state out of the population's optimizer).
        gate: an :class:`EpochGate` that has decided whether the epoch ran whole, once for
            every member of a fit; without one, an epoch ending while a signal is pending
            counts as cut short.
    """

    def __init__(self, folder, history: dict | None = None, prepare=None, gate=None):
        super().__init__()
        self.folder = Path(folder)
        self.history = {k: list(v) for k, v in (history or {}).items()}
        self.prepare = prepare
        self.gate = gate

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        whole = self.gate.whole if self.gate is not None else signals.pending() is None
        if not whole:  # a signal cut the epoch's training or validation short
            return
        if not all(math.isfinite(float(v)) for v in logs.values()):
            return
        done = epoch + 1
        for key, value in logs.items():
            self.history.setdefault(key, []).append(float(value))
        self.folder.mkdir(parents=True, exist_ok=True)
        model_file = f"epoch-{done}.keras"
        model = keras_seam.synced_model(self)
        if self.prepare is not None:
            self.prepare()
        if cluster.process_count() > 1:  # process 0 saves its own copy (cluster.host_copy)
            model = cluster.host_copy(model)
        with runs.atomic_path(self.folder / model_file) as tmp, cluster.without_distribution():
            model.save(tmp)
        seeds = [ops.convert_to_numpy(layer.seed_generator.state.value).tolist()
                 for layer in sampling_layers(model)]
        runs.write_json(self.folder / "state.json", {
            "epochs_done": done, "model": model_file, "seed_states": seeds,
            "history": self.history})
        for old in self.folder.glob("epoch-*.keras"):
            if old.name != model_file:
                old.unlink()


class EpochGate(keras.callbacks.Callback):
    """Decides once per epoch, before any member's checkpoint, whether the epoch ran whole:
    every training step and every validation step. A signal that arrives while the members'
    callbacks run at the epoch's end then cannot leave some members saved and others not.

    Args:
        validation_steps: the steps of one validation pass.
    """

    def __init__(self, validation_steps: int):
        super().__init__()
        self.validation_steps = validation_steps
        self.whole = False
        self._trained = self._validated = -1

    def on_epoch_begin(self, epoch, logs=None):
        self.whole = False
        self._trained = self._validated = -1

    def on_train_batch_end(self, batch, logs=None):
        self._trained = batch  # with groups of steps: the group's last step

    def on_test_batch_end(self, batch, logs=None):
        self._validated = batch

    def on_epoch_end(self, epoch, logs=None):
        self.whole = (self._trained + 1 >= self.params["steps"]
                      and self._validated + 1 >= self.validation_steps)


def restore_seed_states(model: keras.Model, states: list) -> None:
    """Put saved seed-generator states back into the model's sampling layers."""
    layers = sampling_layers(model)
    if len(layers) != len(states):
        raise UsageError(f"the checkpoint has {len(states)} seed states, its model has "
                         f"{len(layers)} sampling layers; start the run again with --overwrite")
    for layer, state in zip(layers, states):
        variable = layer.seed_generator.state
        try:
            value = np.asarray(state, dtype=variable.dtype)
            if value.shape != tuple(variable.shape):
                raise ValueError(f"shape {value.shape}")
        except (ValueError, TypeError, OverflowError) as exc:
            raise UsageError(f"the checkpoint's seed state {state!r} is not usable ({exc}); "
                             f"start the run again with --overwrite") from None
        variable.assign(value)


def read_state(run_dir) -> dict | None:
    """The checkpoint's ``state.json``, or ``None`` when no epoch has been checkpointed;
    ``UsageError`` when it is damaged (truncated, not an object, a key missing or wrong)."""
    path = Path(run_dir) / FOLDER / "state.json"
    if not path.exists():
        return None
    try:
        state = runs.read_json(path)
    except (OSError, ValueError) as exc:
        raise _damaged(path, str(exc)) from None
    expected = {"epochs_done": int, "model": str, "seed_states": list, "history": dict}
    if not isinstance(state, dict):
        raise _damaged(path, "not a JSON object")
    for key, kind in expected.items():
        if not isinstance(state.get(key), kind) or isinstance(state.get(key), bool):
            raise _damaged(path, f"{key!r} is missing or not a {kind.__name__}")
    if state["epochs_done"] < 1 or Path(state["model"]).name != state["model"]:
        raise _damaged(path, "epochs_done or model out of range")
    history = state["history"]
    if not all(isinstance(v, list) and len(v) == state["epochs_done"] for v in history.values()):
        raise _damaged(path, "history rows do not match epochs_done")
    return state


def _damaged(path: Path, why: str):
    return UsageError(f"{path} is damaged ({why}); start the run again with --overwrite")


def load_checkpoint_model(run_dir, state: dict) -> keras.Model:
    return runs.load_model(Path(run_dir) / FOLDER / state["model"])
