"""The one place vaelab calls Keras' ``fit``: a run alone and a population's members alike.

:class:`Fit` builds the model wrapper (the member's own model, or a population), the
feed and every member's callbacks. The settings of the call (steps per compiled call,
validation batches) change the numbers only in the last bits (summation order); they
are recorded under ``fit`` in ``config.json``.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
from pathlib import Path

import keras
import numpy as np

from vaelab.core import keras_seam
from vaelab.core.config import TrainConfig
from vaelab.core.models import VAE
from vaelab.core.models.population import Population, member_key
from vaelab.core.schedules import burda_learning_rate
from vaelab.dist import cluster
from vaelab.training import checkpoint, interrupts
from vaelab.training.callbacks import (CollapseMonitor, KLSchedule, MemberCallbacks,
                                       PopulationProgress, StopOnNonFinite, StopWhenAllStopped)
from vaelab.training.feeding import Feed

VALIDATION_BATCH = 1000        # images per validation step
VALIDATION_BATCH_CONV = 64     # the conv model's, for training batches up to 64
MAX_STEPS_PER_EXECUTION = 128  # training steps per compiled call (JAX scan), at most
MAX_STEPS_CONV = 8             # the conv model's groups are unrolled: short, to compile fast


def progress_mode(verbose: bool) -> int:
    """Keras' live progress bar on a terminal, one line per epoch in a log file."""
    if not verbose:
        return 0
    return 1 if sys.stdout.isatty() else 2


def fit_settings(config: TrainConfig, n_train: int) -> dict:
    """How ``fit`` runs: settings that are not the user's but change the numbers slightly."""
    return {"steps_per_execution": steps_per_execution(n_train, config),
            "validation_batch_size": validation_batch_size(config)}


@dataclasses.dataclass
class Member:
    """One run in a fit: its settings, its compiled model, and where it is written.

    Attributes:
        config: the run's settings (as recorded: KL scale and classes filled in).
        vae: the run's model, built and compiled (:func:`vaelab.training.trainer.new_vae`).
        run_dir: the run folder its checkpoints go to; ``None``: none (a benchmark).
        history: the history rows of the epochs already done (a resumed run's).
    """

    config: TrainConfig
    vae: VAE
    run_dir: Path | None = None
    history: dict = dataclasses.field(default_factory=dict)


class Fit:
    """The one ``fit`` call of vaelab: one member trained as its own model, several as one
    :class:`~vaelab.core.models.population.Population`, with the same callbacks per member.

    Every fit is ``shuffle=False`` on the arrays a :class:`~vaelab.training.feeding.Feed` refills
    before each epoch. Each member gets the callbacks :func:`member_callbacks` builds (its
    KL schedule, its collapse monitor, its checkpoint) and a non-finite guard; a population
    runs them on the member's model with the member's own logs
    (:class:`~vaelab.training.callbacks.MemberCallbacks`), and a member whose loss stops being
    finite stops alone. Checkpoints and the collapse monitor only where this process
    writes the run folders (:func:`vaelab.dist.cluster.is_writer`).

    Args:
        members: the runs, compatible (``vaelab.training.population.check_compatible``) when several.
        dataset: the data they train on.
        verbose: the progress bar and the KL schedules' lines.
    """

    def __init__(self, members: list[Member], dataset, verbose: bool = False):
        config = members[0].config  # the settings members share
        self.members, self.config, self.verbose = members, config, verbose
        self.together = len(members) > 1
        if self.together:
            self.model = Population([m.vae.model for m in members])
            self.model.compile(optimizer=keras.optimizers.Adam(config.learning_rate,
                                                               epsilon=config.adam_epsilon))
        else:
            self.model = members[0].vae.model
        keras_seam.set_steps_per_execution(
            self.model, steps_per_execution(len(dataset.x_train), config))
        vae, count = members[0].vae, cluster.process_count()
        sources = vae.with_labels(dataset.x_train, dataset.y_train)
        self.feed = Feed(sources if isinstance(sources, list) else [sources],
                         [m.config.seed for m in members], batch_size=config.batch_size,
                         binarized=config.model_likelihood.binarized)
        self.x_test = _test_rows(vae.with_labels(dataset.x_test, dataset.y_test), config, count)
        self.guards = [StopOnNonFinite(self.key("loss", i), stop=False)
                       for i in range(len(members))]
        writer = cluster.is_writer()
        rows = len(self.x_test[0] if isinstance(self.x_test, list) else self.x_test)
        self.gate = checkpoint.EpochGate(-(-rows // (validation_batch_size(config) // count)))
        self.savers = [None if m.run_dir is None or not writer else checkpoint.Checkpoint(
            Path(m.run_dir) / checkpoint.FOLDER, m.history, gate=self.gate,
            prepare=functools.partial(self.export_optimizer_state, i) if self.together else None)
            for i, m in enumerate(members)]
        self.callbacks = [self.gate, interrupts.StopOnSignal(), self.feed,
                          *learning_rate_callbacks(config), *self.guards,
                          StopWhenAllStopped(self.guards)]
        announced = set()
        for i, member in enumerate(members):
            label = member.config.anneal or member.config.schedule
            own = member_callbacks(member, dataset, self.savers[i], writer, verbose,
                                   schedule_lines=verbose and label not in announced,
                                   named=self.together)
            announced.add(label)
            self.callbacks += ([MemberCallbacks(i, member.vae.model, own, self.guards[i])]
                               if self.together else own)
        if self.together and verbose:
            self.callbacks.append(PopulationProgress(len(members), progress_mode(verbose)))

    def key(self, name: str, index: int) -> str:
        """Member ``index``'s log ``name`` in this fit's logs (``loss[2]`` in a population)."""
        return member_key(name, index) if self.together else name

    def run(self, initial_epoch: int = 0, epochs: int | None = None, callbacks=()):
        """``fit`` from ``initial_epoch`` to ``epochs`` (default the config's); returns the
        ``History``. ``callbacks`` run after this fit's own."""
        count = cluster.process_count()
        inputs = [self.feed.inputs(i) for i in range(len(self.members))]
        x_test = [self.x_test] * len(self.members) if self.together else self.x_test
        return self.model.fit(
            inputs if self.together else inputs[0], epochs=epochs or self.config.epochs,
            initial_epoch=initial_epoch, batch_size=self.config.batch_size // count,
            shuffle=False, validation_data=(x_test,),  # the targets are the inputs
            validation_batch_size=validation_batch_size(self.config) // count,
            callbacks=[*self.callbacks, *callbacks],
            verbose=0 if self.together else progress_mode(self.verbose))

    def export_optimizer_state(self, index: int) -> None:
        """A population member's own Adam state into its own optimizer (nothing alone)."""
        if self.together:
            self.model.export_optimizer_state(index)

    def last_checkpoints(self) -> str | None:
        """What an interrupted fit resumes from: one line; ``None`` where nothing is written."""
        done = [len(s.history.get("loss", [])) for s in self.savers if s is not None]
        if not done:
            return None
        if not self.together:
            return f"last checkpoint: epoch {done[0]}" if done[0] else "no checkpoint yet"
        if len(set(done)) == 1:
            return f"last checkpoint of each run: epoch {done[0]}" if done[0] else "no checkpoint yet"
        return "last checkpoints: " + ", ".join(f"{m.run_dir}: epoch {n}" if n else f"{m.run_dir}: none"
                                                for m, n in zip(self.members, done))


def member_callbacks(member: Member, dataset, saver, writer: bool, verbose: bool, *,
                     schedule_lines: bool, named: bool) -> list:
    """One run's own callbacks: its KL schedule (``schedule_lines``: a line per epoch), its
    collapse monitor where this process writes (``named``: the warning names the run) and
    its checkpoint ``saver``, if any."""
    own = []
    schedule = member.config.kl_schedule()
    if schedule is not None:
        own.append(KLSchedule(schedule, verbose=schedule_lines))
    if writer:
        own.append(CollapseMonitor(heldout_inputs(member.config, member.vae, dataset),
                                   verbose=verbose, name=str(member.run_dir) if named else None))
    return own if saver is None else [*own, saver]


def heldout_inputs(config: TrainConfig, vae: VAE, dataset):
    """The fixed test batch the collapse monitor watches (with labels for a conditional VAE)."""
    heldout = slice(0, config.heldout_size)
    return vae.with_labels(dataset.x_test[heldout], dataset.y_test[heldout])


def learning_rate_callbacks(config: TrainConfig) -> list:
    """The callback that sets ``config.lr_schedule``'s learning rate each epoch, if any."""
    if config.lr_schedule != "burda":
        return []
    return [keras.callbacks.LearningRateScheduler(
        lambda epoch, _: burda_learning_rate(epoch, config.learning_rate))]


def _test_rows(x_test, config: TrainConfig, count: int):
    """The validation input; in a job of ``count`` processes, this process's fixed rows."""
    if count == 1:
        return x_test
    rows = cluster.local_rows(len(x_test[0] if isinstance(x_test, list) else x_test),
                              validation_batch_size(config), count, cluster.process_index())
    if isinstance(x_test, list):
        return [np.take(a, rows, axis=0) for a in x_test]
    return np.take(x_test, rows, axis=0)


def steps_per_execution(n_images: int, config: TrainConfig) -> int:
    """Training steps per compiled call: about a tenth of an epoch, at most
    ``MAX_STEPS_PER_EXECUTION``.

    Under JAX, ``VAEModel`` runs such a group as one ``lax.scan`` (see
    ``VAEModel.make_train_function``), which removes Keras' per-step Python work.
    A divisor of the number of full batches is preferred, so that no shorter
    group needs compiling. 1 (one step per call, Keras' own loop) when an epoch
    has fewer than 20 batches, with ``--distribute`` and off JAX.
    """
    full = n_images // config.batch_size
    cap = MAX_STEPS_CONV if config.model == "conv" else MAX_STEPS_PER_EXECUTION
    target = min(cap, full // 10)
    if target < 2 or config.distribute or keras.backend.backend() != "jax":
        return 1
    divisor = max(d for d in range(1, target + 1) if full % d == 0)
    return divisor if 2 * divisor >= target else target


def validation_batch_size(config: TrainConfig) -> int:
    """Validation in batches of 1 000 (a multiple of the training batch): the mean losses
    are the same, and 10 evaluation steps cost far less than 313 of 32 images. The conv
    model, trained in batches of at most 64, validates in batches of the largest multiple
    of its training batch up to 64: its forward pass ran twice as fast per image at 64 as
    at 128 to 1 000 on a 2-core CPU (the activations of a batch of 64 stay in the caches;
    ``docs/performance.md``)."""
    batch = config.batch_size
    if config.model == "conv" and batch <= VALIDATION_BATCH_CONV:
        return VALIDATION_BATCH_CONV - VALIDATION_BATCH_CONV % batch
    return max(batch, VALIDATION_BATCH - VALIDATION_BATCH % batch)
