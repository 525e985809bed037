"""Many runs for the price of few: compatible runs trained together, one compiled step for all.

``train_many(runs)`` trains a list of :class:`Run` (a config and a run folder each).
Runs whose settings differ only in what each member owns (:data:`MEMBER_FIELDS`: seed,
KL scale, β, free bits, KL schedule, the held-out and lab images) are *compatible*: they
share the model, the batches' shape, the epochs, the data and the optimizer's settings.
Compatible runs train as one population (:class:`vaelab.core.models.population.Population`,
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
once they are written, :class:`~vaelab.core.config.NonFiniteLoss` names it.

Population training needs the JAX backend (one compiled step, ``lax.scan`` groups) in one
process; elsewhere the runs train one by one.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import keras

from vaelab.core.config import TrainConfig, UsageError
from vaelab.training import trainer
from vaelab.training.trainer import check_compatible, check_folders, shared_settings, why_alone

__all__ = ["MAX_MEMBERS", "MAX_MEMBERS_CPU", "Run", "check_compatible", "default_max_members",
           "groups", "train_many"]

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


def groups(configs: list[TrainConfig], max_members: int = MAX_MEMBERS) -> list[list[int]]:
    """Indices of ``configs`` by population, in plan order: compatible runs together, at most
    ``max_members`` each; a run with ``distribute`` alone."""
    buckets: dict[str, list[int]] = {}
    for i, config in enumerate(configs):
        key = f"alone {i}" if config.distribute else trainer.compatible_key(config)
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


def check_max_members(value) -> None:
    """``UsageError`` unless ``value`` is ``None`` or a positive integer."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise UsageError(f"--together must be a positive integer, received {value!r}")


def train_many(plan: list[Run], *, overwrite: bool = False, verbose: bool = True, arrays=None,
               max_members: int | None = None) -> list[dict]:
    """Train every run of ``plan``: compatible ones as populations, the rest one by one.

    Args:
        plan: the runs, in order (folders must be new or empty unless ``overwrite``).
        overwrite, verbose, arrays: as :func:`vaelab.training.trainer.train`.
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
        if verbose and len(group) == 1:
            run = plan[group[0]]
            print(f"\n== {run.run_dir}: {run.title}" if run.title else f"\n== {run.run_dir}")
        elif verbose:
            print(f"\n== {len(group)} runs together, one compiled step:")
            for i in group:
                print(f"   {plan[i].run_dir}: {plan[i].title}" if plan[i].title
                      else f"   {plan[i].run_dir}")
        values = trainer.train_group([plan[i].config for i in group],
                                      [Path(plan[i].run_dir) for i in group],
                                      overwrite=overwrite, verbose=verbose, arrays=arrays)
        for i, value in zip(group, values):
            results[i] = value
    return results
