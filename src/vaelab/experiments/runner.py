"""One experiment runner: the lab and the ablation are plans of runs, trained and reported alike.

``run_plan`` checks the options and the output folder, locks it, records the plan in a
summary file (``lab.json``, ``ablate.json``), trains every planned run (compatible ones as
populations, :func:`vaelab.training.population.train_many`) and writes the report.
``resume_plan`` finishes a plan that was interrupted, from its summary file alone.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

from vaelab import choices, signals
from vaelab.core.config import TrainConfig, UsageError
from vaelab.data import Dataset
from vaelab.store import runs
from vaelab.training import preflight
from vaelab.training.population import Run, check_max_members, train_many


@dataclasses.dataclass(frozen=True)
class Planned:
    """One run of a plan: the experiment (a row of the report) it belongs to and its folder."""

    group: str         # the experiment or method: its folder name
    title: str         # one line for the report
    folder: str        # the run folder, under the plan's output folder
    config: TrainConfig


def check_seeds(seeds) -> int:
    """``seeds`` if it is a positive integer; ``UsageError`` naming it otherwise."""
    if (isinstance(seeds, bool) or not isinstance(seeds, int)
            or not 1 <= seeds <= choices.MAX_PLAN_SEEDS):
        raise UsageError(f"--seeds must be an integer from 1 to {choices.MAX_PLAN_SEEDS}, "
                         f"received {seeds!r}")
    return seeds


@dataclasses.dataclass(frozen=True)
class Kind:
    """What a plan is: the command that runs it, its summary file, how it is made."""

    command: str                      # "lab" or "ablate"
    summary: str                      # the summary file in the output folder
    groups_key: str                   # the summary's key of the groups' titles
    make: Callable[[bool, int, str | None], list[Planned]]  # (quick, seeds, data_dir) -> plan
    write_report: Callable[[Path], Path]  # from the folder alone; returns the HTML page
    first: Callable[[Dataset, Path, bool, bool], object] | None = None  # (data, out, quick,
    #                                     verbose), before the plan: the lab's classifier
    first_folder: str | None = None   # the folder ``first`` writes
    default_out: str = "runs"         # the output folder without --out
    default_seeds: int = 1            # seeds without --seeds


QUICK_SIZES = dict(train_size=1024, test_size=512)  # the subset --quick trains and tests on


def check_plan_data(plan: list[Planned], data: Dataset, quick: bool) -> None:
    """Every run of ``plan`` can use ``data`` (sizes, image shape, labels), checked before
    anything is written: a plan must not stop at its second run on what the first could
    have told."""
    if quick:
        train_size, test_size = QUICK_SIZES["train_size"], QUICK_SIZES["test_size"]
        if len(data.x_train) < train_size or len(data.x_test) < test_size:
            raise UsageError(f"--quick trains on the first {train_size} training and "
                             f"{test_size} test images; {data.describe()} has "
                             f"{len(data.x_train)} and {len(data.x_test)}")
    for config in {dataclasses.replace(p.config, seed=0) for p in plan}:
        preflight.run_dataset(config, data)


def run_plan(kind: Kind, out, *, quick: bool, seeds: int, data_dir: str | None,
             overwrite: bool, verbose: bool, together: int | None) -> Path:
    """Train ``kind``'s plan into ``out`` and write its report; returns ``out``.

    The summary file is written first (``"complete": false``), so an interrupted plan can
    be finished with ``vaelab <command> --resume OUT`` (:func:`resume_plan`).
    """
    out = Path(out)
    check_seeds(seeds)
    check_max_members(together)
    runs.check_run_dir(out, overwrite)
    plan = kind.make(quick, seeds, data_dir)
    data = Dataset.load(data_dir)
    check_plan_data(plan, data, quick)
    out.mkdir(parents=True, exist_ok=True)
    with runs.locked(out):  # one plan per folder; each run also locks its own folder
        runs.check_run_dir(out, overwrite)
        titles, folders = {}, {}
        for p in plan:
            titles.setdefault(p.group, p.title)
            folders.setdefault(p.group, []).append(p.folder)
        summary = {"quick": quick, "seeds": seeds, "data_dir": data_dir, "total_seconds": 0.0,
                   kind.groups_key: titles, "runs": folders, "complete": False}
        runs.write_json(out / kind.summary, summary)
        if kind.first is not None:
            _timed(kind, out, summary, lambda: kind.first(data, out, quick, verbose))
        _timed(kind, out, summary, lambda: train_many(
            [Run(p.config, out / p.folder, p.title) for p in plan], overwrite=True,
            verbose=verbose, arrays=data, max_members=together))
        return _finish(kind, out, summary, verbose)


def resume_plan(kind: Kind, out, *, verbose: bool, together: int | None) -> Path:
    """Finish an interrupted plan in ``out`` with its own settings (its summary file): the
    first step again if it did not finish, every started run resumed alone from its last
    checkpoint (exactly, as ``vaelab train --resume``), the runs not started trained as an
    uninterrupted plan would train them (compatible ones together); then the report."""
    out = Path(out)
    check_max_members(together)
    path = out / kind.summary
    try:
        summary = runs.read_json(path)
        if summary.get("complete") is True:
            raise UsageError(f"--resume {out}: the {kind.command} is already complete")
        # A file left on disk: its settings are checked before they size anything.
        recorded = summary["runs"]
        seeds = summary["seeds"]
        if (not isinstance(summary["quick"], bool) or isinstance(seeds, bool)
                or not isinstance(seeds, int) or not isinstance(recorded, dict) or not recorded
                or any(not isinstance(v, list) or len(v) != seeds for v in recorded.values())):
            raise ValueError("quick, seeds or runs do not agree")
        plan = kind.make(summary["quick"], seeds, summary.get("data_dir"))
    except FileNotFoundError:
        raise UsageError(f"--resume {out}: no {kind.summary} there; it is not a folder "
                         f"`vaelab {kind.command}` wrote") from None
    except UsageError:
        raise
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UsageError(f"--resume {out}: {path} is damaged ({exc}); start again with "
                         f"--overwrite") from None
    folders = {}
    for p in plan:
        folders.setdefault(p.group, []).append(p.folder)
    if folders != summary.get("runs"):
        raise UsageError(f"--resume {out}: {path} does not list the runs of this version of "
                         f"vaelab {kind.command}; start again with --overwrite")
    from vaelab.training import trainer

    data = Dataset.load(summary.get("data_dir"))
    with runs.locked(out):
        if kind.first is not None and not runs.is_complete(out / kind.first_folder):
            _timed(kind, out, summary,
                   lambda: kind.first(data, out, summary["quick"], verbose))
        fresh = []
        for p in plan:
            run_dir = out / p.folder
            if runs.is_complete(run_dir):
                continue
            if (run_dir / "config.json").exists():
                if verbose:
                    print(f"\n== {run_dir}: {p.title} (resumed)")
                _timed(kind, out, summary,
                       lambda run_dir=run_dir: trainer.resume(run_dir, verbose=verbose,
                                                              arrays=data))
            else:
                fresh.append(p)
        if fresh:
            _timed(kind, out, summary, lambda: train_many(
                [Run(p.config, out / p.folder, p.title) for p in fresh], overwrite=True,
                verbose=verbose, arrays=data, max_members=together))
        return _finish(kind, out, summary, verbose)


def _timed(kind: Kind, out: Path, summary: dict, step) -> None:
    """Run ``step``, adding its time to the summary; an interrupt names the command that
    finishes the plan."""
    started = time.perf_counter()
    try:
        step()
    except signals.Interrupted as exc:
        hint = f"finish with: vaelab {kind.command} --resume {out}"
        exc.checkpoint = f"{exc.checkpoint}; {hint}" if exc.checkpoint else hint
        raise
    finally:
        summary["total_seconds"] = round(summary["total_seconds"]
                                         + time.perf_counter() - started, 1)
        runs.write_json(out / kind.summary, summary)


def _finish(kind: Kind, out: Path, summary: dict, verbose: bool) -> Path:
    summary["complete"] = True
    runs.write_json(out / kind.summary, summary)
    page = kind.write_report(out)
    if verbose:
        print(f"\nreport: {out / 'report.md'} and {page}")
    return out
