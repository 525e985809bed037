"""Many runs for the price of few: compatible runs trained together, one compiled step for all.

``train_many(runs)`` trains a list of :class:`Run` (a config and a run folder each).
Runs whose settings differ only in what each member owns (:data:`MEMBER_FIELDS`: seed,
KL scale, β, free bits, KL schedule, the held-out and lab images) are *compatible*: they
share the model, the batches' shape, the epochs, the data and the optimizer's settings.
Compatible runs train as one population (:class:`vaelab.models.population.Population`,
at most ``max_members`` at a time: 8 by default on an accelerator; on a CPU, where a
step is compute-bound and a population was measured no faster, runs train one by one
unless ``max_members`` says otherwise); every member still
has its own weights, Adam state, noise, batch order (its seed's, as alone), binarization
and KL weight, so its history is the one it would have alone. Where some runs train together, one line names the settings
that keep any run without a compatible partner alone.

Each member keeps its own run folder, written as a run trained alone writes it (config,
per-epoch checkpoints with its own optimizer state, history, model, figures, explorer,
``metrics.json``), so ``vaelab train --resume`` continues an interrupted member alone.
``config.json`` records ``fit.population`` (members and this run's index) and
``metrics.json`` ``trained_together``; ``train_seconds`` is the population's fit time.

Per-member callbacks keep their per-epoch meaning: each member's KL schedule sets its own
KL weight, its collapse monitor watches its own encoder, its checkpoint saves its own
state. A member whose loss stops being finite is stopped alone: its folder keeps its last
good checkpoint (as a run alone would), the others train on (its weights no longer
change anything of theirs: the population's loss is a sum of independent terms), and
once they are written, :class:`~vaelab.config.NonFiniteLoss` names it.

Population training needs the JAX backend (one compiled step, ``lax.scan`` groups) in one
process; elsewhere the runs train one by one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import time
from pathlib import Path

import keras
import numpy as np

from vaelab import checkpoint, cluster, interrupts, preflight, runs, training
from vaelab.callbacks import CollapseMonitor, KLSchedule, StopOnNonFinite, shuffle_seed
from vaelab.config import NonFiniteLoss, TrainConfig, UsageError
from vaelab.data import Dataset
from vaelab.fit import fit_settings, progress_mode, steps_per_execution, validation_batch_size
from vaelab.models import VAE
from vaelab.models.population import Population, member_key, member_logs

# What each member of a population owns; every other setting must be the same.
MEMBER_FIELDS = ("seed", "kl_scale", "beta", "free_bits", "anneal", "schedule", "heldout_size",
                 "lab_image")
# The largest population by default: on an accelerator a step of 8 lab models costs far
# less than 8 steps of one; on a CPU a step is already compute-bound, and together the
# runs were no faster (2 members: 0.99-1.06x, 4: 0.91-0.98x, 8: 0.87-1.00x the speed of one
# by one; the lab in pairs 164 s against 156 s, mean of three each): one by one there.
# See docs/performance.md.
MAX_MEMBERS = 8
MAX_MEMBERS_CPU = 1


def on_accelerator() -> bool:
    """Whether Keras (JAX) sees a device other than the CPU; ``False`` off JAX, where
    populations do not run."""
    if keras.backend.backend() != "jax":
        return False
    return any(not d.lower().startswith("cpu") for d in keras.distribution.list_devices())


def default_max_members() -> int:
    """``MAX_MEMBERS`` where Keras sees an accelerator, ``MAX_MEMBERS_CPU`` on a CPU."""
    return MAX_MEMBERS if on_accelerator() else MAX_MEMBERS_CPU


@dataclasses.dataclass(frozen=True)
class Run:
    """One run of a plan: its settings, its folder and a title for the progress lines."""

    config: TrainConfig
    run_dir: Path | str
    title: str = ""


def shared_settings(config: TrainConfig) -> dict:
    """The settings every member of a population has in common."""
    return {k: v for k, v in config.to_dict().items() if k not in MEMBER_FIELDS}


def why_alone() -> str | None:
    """Why runs cannot train together here, or ``None`` when they can."""
    if keras.backend.backend() != "jax":
        return f"population training needs the JAX backend, this is {keras.backend.backend()}"
    if cluster.process_count() > 1:
        return "population training runs in one process, this is a job of several"
    return None


def groups(configs: list[TrainConfig], max_members: int = MAX_MEMBERS) -> list[list[int]]:
    """Indices of ``configs`` by population, in plan order: compatible runs together, at most
    ``max_members`` each; a run with ``distribute`` alone."""
    buckets: dict[str, list[int]] = {}
    for i, config in enumerate(configs):
        key = (f"alone {i}" if config.distribute
               else json.dumps(shared_settings(config), sort_keys=True, default=str))
        buckets.setdefault(key, []).append(i)
    found = [bucket[j:j + max_members] for bucket in buckets.values()
             for j in range(0, len(bucket), max_members)]
    return sorted(found, key=lambda group: group[0])


def _differences(configs: list[TrainConfig], alone: list[int]) -> str:
    """The shared settings that keep each run of ``alone`` from its nearest other run."""
    settings = [shared_settings(c) for c in configs]
    names = set()
    for i in alone:
        nearest = min(({key for key in settings[i] if settings[i][key] != settings[j][key]}
                       for j in range(len(configs)) if j != i), key=len, default=set())
        names |= nearest
    return ", ".join(sorted(names))


def check_folders(run_dirs: list[Path], overwrite: bool) -> None:
    """Every run folder usable, and no two runs the same folder, before any run starts."""
    seen: dict[Path, Path] = {}
    for run_dir in run_dirs:
        key = run_dir.resolve()
        if key in seen:
            raise UsageError(f"two runs would write the same folder: {seen[key]} and {run_dir}")
        seen[key] = run_dir
        runs.check_run_dir(run_dir, overwrite)


def check_max_members(value) -> None:
    """``UsageError`` unless ``value`` is ``None`` or a positive integer."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise UsageError(f"--together must be a positive integer, received {value!r}")


def train_many(plan: list[Run], *, overwrite: bool = False, verbose: bool = True, arrays=None,
               max_members: int | None = None) -> list[dict]:
    """Train every run of ``plan``: compatible ones as populations, the rest one by one.

    Args:
        plan: the runs, in order (folders must be new or empty unless ``overwrite``).
        overwrite, verbose, arrays: as :func:`vaelab.training.train`.
        max_members: the largest population; 1 trains every run alone, as ``train`` does;
            ``None``: :func:`default_max_members` (8 on an accelerator, 1 on a CPU).

    Returns:
        Each run's ``metrics.json`` contents, in plan order.

    Raises:
        UsageError: ``max_members`` is not a positive integer, a folder is not usable or two
            runs share one (all checked before any run starts).
        NonFiniteLoss: a run's loss stopped being finite (the others of its population are
            complete; populations and runs not yet started are not started).
    """
    check_max_members(max_members)
    check_folders([Path(run.run_dir) for run in plan], overwrite)
    configs = [run.config for run in plan]
    size = default_max_members() if max_members is None else max_members
    compatible = groups(configs, len(plan))  # every compatible set, whole
    partners = [g for g in compatible if len(g) > 1]
    asked = max_members is None or max_members > 1
    reason = why_alone() if asked and partners else None
    if reason is not None:
        size = 1
        if verbose:
            print(f"vaelab: {reason}: the {len(plan)} runs train one by one")
    elif partners and size == 1 and max_members is None and verbose:
        print("vaelab: on a CPU the runs train one by one (together they are no faster "
              "there); --together N trains up to N compatible runs as one population")
    found = groups(configs, size)
    if size > 1 and partners and verbose:
        alone = [g[0] for g in compatible if len(g) == 1]  # no partner at all
        if alone:
            print(f"vaelab: {len(alone)} of {len(plan)} runs train alone (they differ from the "
                  f"others in {_differences(configs, alone)}); "
                  f"{sum(len(g) > 1 for g in found)} population(s) for the rest")
    results: list[dict | None] = [None] * len(plan)
    for group in found:
        if len(group) == 1:
            run = plan[group[0]]
            if verbose:
                print(f"\n== {run.run_dir}: {run.title}" if run.title else f"\n== {run.run_dir}")
            results[group[0]] = training.train(run.config, run.run_dir, overwrite=overwrite,
                                               verbose=verbose, arrays=arrays)
            continue
        if verbose:
            print(f"\n== {len(group)} runs together, one compiled step:")
            for i in group:
                print(f"   {plan[i].run_dir}: {plan[i].title}" if plan[i].title
                      else f"   {plan[i].run_dir}")
        values = train_population([plan[i].config for i in group],
                                  [Path(plan[i].run_dir) for i in group],
                                  overwrite=overwrite, verbose=verbose, arrays=arrays)
        for i, value in zip(group, values):
            results[i] = value
    return results


def check_compatible(configs: list[TrainConfig]) -> None:
    """``ValueError`` naming the first setting in which two members differ."""
    first = shared_settings(configs[0])
    for config in configs[1:]:
        for key, value in shared_settings(config).items():
            if value != first[key]:
                raise ValueError(f"runs trained together must share {key}: "
                                 f"{first[key]!r} and {value!r}")


def train_population(configs: list[TrainConfig], run_dirs: list[Path], *, overwrite: bool = False,
                     verbose: bool = True, arrays=None) -> list[dict]:
    """Train compatible runs as one population, each into its own folder.

    Every folder and setting is checked before any is written. Returns each run's
    ``metrics.json`` contents; raises ``NonFiniteLoss`` (after writing the others) when a
    member's loss stopped being finite.
    """
    if why_alone() is not None:
        raise UsageError(why_alone())
    run_dirs = [Path(d) for d in run_dirs]
    check_folders(run_dirs, overwrite)
    try:
        check_compatible(configs)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    first = configs[0]
    if arrays is None:  # read once, shared by every member (each cuts its own sizes)
        arrays = Dataset.load(first.data_dir, first.dataset)
    prepared, dataset = [], None
    for config, run_dir in zip(configs, run_dirs):
        config, data = training.prepare(config, run_dir, overwrite, arrays)
        if dataset is None:
            dataset = data
        elif data.identity != dataset.identity:
            raise UsageError("runs trained together must train on the same data")
        prepared.append(config)
    configs = prepared
    preflight.check_memory(configs[0], dataset.input_dim, copies=len(configs),
                           data_bytes=len(configs) * dataset.x_train.nbytes)
    if verbose:
        for config in configs:
            preflight.warn(config, dataset)
    with contextlib.ExitStack() as locks:
        for run_dir in run_dirs:  # every folder locked and checked before any is written
            runs.make_run_dir(run_dir)
            locks.enter_context(runs.locked(run_dir))
            runs.check_run_dir(run_dir, overwrite)  # again, now that no one else can write
        for i, (config, run_dir) in enumerate(zip(configs, run_dirs)):
            runs.clear(run_dir)
            settings = fit_settings(config, len(dataset.x_train))
            settings["population"] = {"members": len(configs), "index": i,
                                      "runs": [str(d) for d in run_dirs]}
            runs.write_config(run_dir, config, dataset.identity, settings)
        members = [training.new_vae(config, dataset.input_dim) for config in configs]
        return _fit_and_finish(configs, run_dirs, members, dataset, verbose)


def _fit_and_finish(configs: list[TrainConfig], run_dirs: list[Path], members: list[VAE],
                    dataset: Dataset, verbose: bool) -> list[dict]:
    config = configs[0]  # the shared settings
    population = Population([vae.model for vae in members])
    population.compile(optimizer=keras.optimizers.Adam(config.learning_rate,
                                                       epsilon=config.adam_epsilon))
    population.steps_per_execution = steps_per_execution(len(dataset.x_train), config)
    guards = [StopOnNonFinite(member_key("loss", i), stop=False) for i in range(len(members))]
    savers = [checkpoint.Checkpoint(run_dir / checkpoint.FOLDER,
                                    prepare=functools.partial(population.export_optimizer_state, i))
              for i, run_dir in enumerate(run_dirs)]
    x_fit, feed = _feed(configs, members[0], dataset)
    callbacks = [interrupts.StopOnSignal(), feed]
    callbacks += [*training.learning_rate_callbacks(config), *guards, StopWhenAllStopped(guards)]
    announced = set()
    for i, (member_config, vae) in enumerate(zip(configs, members)):
        own = []
        schedule = member_config.kl_schedule()
        if schedule is not None:  # one line per epoch for each different schedule
            label = member_config.anneal or member_config.schedule
            own.append(KLSchedule(schedule, verbose=verbose and label not in announced))
            announced.add(label)
        own += [CollapseMonitor(training.heldout_inputs(member_config, vae, dataset),
                                verbose=verbose, name=str(run_dirs[i])), savers[i]]
        callbacks.append(MemberCallbacks(i, vae.model, own, guards[i]))
    if verbose:
        callbacks.append(PopulationProgress(len(members), progress_mode(verbose)))
    x_test = [members[0].with_labels(dataset.x_test, dataset.y_test)] * len(members)
    started = time.perf_counter()
    try:
        with interrupts.deferred():
            population.fit(x_fit, epochs=config.epochs, batch_size=config.batch_size,
                           shuffle=False, validation_data=(x_test,),
                           validation_batch_size=validation_batch_size(config),
                           callbacks=callbacks, verbose=0)
    except interrupts.Interrupted as exc:
        exc.checkpoint = _last_checkpoints(run_dirs, savers)
        raise
    seconds = time.perf_counter() - started
    results, failures = [], []
    for i, (member_config, run_dir, vae) in enumerate(zip(configs, run_dirs, members)):
        if guards[i].where is not None:
            why = training.non_finite_message(guards[i], savers[i], run_dir)
            failures.append(f"{run_dir}: {why}")
            continue
        population.export_optimizer_state(i)  # model.keras holds the optimizer, as alone
        results.append(training.finish(member_config, run_dir, vae, dataset, savers[i].history,
                                       seconds, 0, verbose, together=len(members)))
    if failures:
        raise NonFiniteLoss("; ".join(failures))
    return results


def _last_checkpoints(run_dirs: list[Path], savers: list) -> str:
    """What each member would resume from: one epoch for all, or each run's own."""
    done = [len(saver.history.get("loss", [])) for saver in savers]
    if len(set(done)) == 1:
        return f"last checkpoint of each run: epoch {done[0]}" if done[0] else "no checkpoint yet"
    return "last checkpoints: " + ", ".join(f"{d}: epoch {n}" if n else f"{d}: none"
                                            for d, n in zip(run_dirs, done))


def _feed(configs: list[TrainConfig], vae: VAE, dataset: Dataset):
    """The population's training input (one input per member, each its own arrays) and
    the callback that fills them before each epoch."""
    sources = vae.with_labels(dataset.x_train, dataset.y_train)
    sources = sources if isinstance(sources, list) else [sources]
    targets = [[np.empty_like(a) for a in sources] for _ in configs]
    feed = PopulationFeed(sources, targets, [c.seed for c in configs],
                          binarized=configs[0].model_likelihood.binarized)
    return [t if len(t) > 1 else t[0] for t in targets], feed


class PopulationFeed(keras.callbacks.Callback):
    """Before each epoch, member ``i``'s arrays: the images (and labels) in the order a run
    seeded ``seeds[i]`` shuffles them alone, freshly binarized as that run would binarize
    them (``binarized``).

    Alone, :class:`~vaelab.callbacks.Binarize` draws from ``(seed, epoch, 1)`` and
    ``fit(shuffle=True)`` permutes with NumPy seeded ``(seed, epoch)``
    (:class:`~vaelab.callbacks.ShuffleSeed`); the population is fit with
    ``shuffle=False`` on these arrays, so member ``i`` sees the same batches.

    Args:
        sources: the full arrays (images, and one-hot labels if any).
        targets: per member, arrays shaped as ``sources``, given to ``fit``.
        seeds: each member's run seed.
        binarized: draw binary images from the gray ones, as the Bernoulli likelihood does.
    """

    def __init__(self, sources: list[np.ndarray], targets: list[list[np.ndarray]],
                 seeds: list[int], binarized: bool = False):
        super().__init__()
        self.sources, self.targets, self.seeds, self.binarized = sources, targets, seeds, binarized

    def on_epoch_begin(self, epoch, logs=None):
        n = len(self.sources[0])
        for seed, targets in zip(self.seeds, self.targets, strict=True):
            order = np.random.RandomState(shuffle_seed(seed, epoch)).permutation(n)
            images = self.sources[0]
            if self.binarized:
                draw = np.random.default_rng([seed, epoch, 1]).random(images.shape, np.float32)
                images = np.less(draw, images).astype(images.dtype)
            for source, target in zip([images, *self.sources[1:]], targets, strict=True):
                np.take(source, order, axis=0, out=target)


class MemberCallbacks(keras.callbacks.Callback):
    """One member's own callbacks, run on the member model with the member's own logs.

    Each hook first reaches the population through ``self.model`` (which, under JAX,
    writes the trained state back into the shared variables), then calls the member's
    callbacks with ``logs`` under their alone names (``loss``, ``kl_weight``, …); what they
    add is written back as ``name[i]``. Once ``guard`` has seen a non-finite loss the
    member's callbacks are no longer called.
    """

    def __init__(self, index: int, member: keras.Model, callbacks: list, guard: StopOnNonFinite):
        super().__init__()
        self.index, self.member, self.callbacks, self.guard = index, member, callbacks, guard
        for callback in callbacks:
            callback.set_model(member)

    def set_params(self, params):
        super().set_params(params)
        for callback in self.callbacks:
            callback.set_params(params)

    def _run(self, hook: str, *args, logs=None):
        if self.guard.where is not None:
            return
        _ = self.model  # syncs the population's state into the variables the member shares
        own = member_logs(logs, self.index) if logs is not None else None
        before = set(own or {})
        for callback in self.callbacks:
            getattr(callback, hook)(*args, own)
        if logs is not None:
            for key in set(own) - before:
                logs[member_key(key, self.index)] = own[key]

    def on_train_begin(self, logs=None):
        self._run("on_train_begin", logs=logs)

    def on_epoch_begin(self, epoch, logs=None):
        self._run("on_epoch_begin", epoch, logs=logs)

    def on_epoch_end(self, epoch, logs=None):
        self._run("on_epoch_end", epoch, logs=logs)

    def on_train_end(self, logs=None):
        self._run("on_train_end", logs=logs)


class StopWhenAllStopped(keras.callbacks.Callback):
    """Stops the population once every member's guard has seen a non-finite loss."""

    def __init__(self, guards: list[StopOnNonFinite]):
        super().__init__()
        self.guards = guards

    def on_train_batch_end(self, batch, logs=None):
        if all(guard.where is not None for guard in self.guards):
            self.model.stop_training = True


class PopulationProgress(keras.callbacks.Callback):
    """Keras' progress bar with each member's loss (``loss[i]``) rather than every log."""

    def __init__(self, members: int, mode: int):
        super().__init__()
        self.keys = [member_key("loss", i) for i in range(members)]
        self.mode = mode

    def on_epoch_begin(self, epoch, logs=None):
        print(f"Epoch {epoch + 1}/{self.params['epochs']}")
        self.bar = keras.utils.Progbar(self.params["steps"], verbose=self.mode,
                                       stateful_metrics=self.keys + ["val_" + k for k in self.keys])

    def _values(self, logs, prefix=""):
        return [(prefix + k, float(logs[prefix + k])) for k in self.keys
                if prefix + k in logs and math.isfinite(float(logs[prefix + k]))]

    def on_train_batch_end(self, batch, logs=None):
        if batch + 1 < self.params["steps"]:  # the last step's values come with the epoch's end
            self.bar.update(batch + 1, self._values(logs or {}))

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        self.bar.update(self.params["steps"], self._values(logs) + self._values(logs, "val_"),
                        finalize=True)
