"""One experiment runner: the lab and the ablation are plans of runs, trained and reported alike.

``run_plan`` checks the options and the output folder, locks it, trains every planned run
(compatible ones as populations, :func:`vaelab.training.population.train_many`), records
the plan in a summary file (``lab.json``, ``ablate.json``) and writes the report.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

from vaelab.core.config import TrainConfig, UsageError
from vaelab.data import Dataset
from vaelab.store import runs
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
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise UsageError(f"--seeds must be a positive integer, received {seeds!r}")
    return seeds


def run_plan(out, plan: list[Planned], *, summary: str, groups_key: str, quick: bool,
             seeds: int, data_dir: str | None, overwrite: bool, verbose: bool,
             together: int | None, write_report: Callable[[Path], Path],
             first: Callable[[Dataset], object] | None = None) -> Path:
    """Train ``plan`` into ``out`` and write its report; returns ``out``.

    Args:
        summary: the file recording the plan (``quick``, ``seeds``, the total time, each
            group's title under ``groups_key`` and its folders under ``runs``).
        first: what runs before the plan, on the same data, under the folder's lock (the
            lab's classifier).
        write_report: writes the report from the folder alone; returns the HTML page.
    """
    out = Path(out)
    check_seeds(seeds)
    check_max_members(together)
    runs.check_run_dir(out, overwrite)
    data = Dataset.load(data_dir)
    out.mkdir(parents=True, exist_ok=True)
    with runs.locked(out):  # one plan per folder; each run also locks its own folder
        runs.check_run_dir(out, overwrite)
        started = time.perf_counter()
        if first is not None:
            first(data)
        train_many([Run(p.config, out / p.folder, p.title) for p in plan], overwrite=True,
                   verbose=verbose, arrays=data, max_members=together)
        titles, folders = {}, {}
        for p in plan:
            titles.setdefault(p.group, p.title)
            folders.setdefault(p.group, []).append(p.folder)
        runs.write_json(out / summary, {
            "quick": quick, "seeds": seeds,
            "total_seconds": round(time.perf_counter() - started, 1),
            groups_key: titles, "runs": folders})
        page = write_report(out)
    if verbose:
        print(f"\nreport: {out / 'report.md'} and {page}")
    return out
