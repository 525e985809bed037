"""``vaelab tutorial check``: grade submissions, one or a whole class.

For each submission (a notebook or a percent-format ``.py``) the grader finds each
exercise's code cell (:mod:`vaelab.teaching.grading.exercises`), says ``not attempted`` where the
student copy's ``raise NotImplementedError`` is still there, and otherwise sends the cell
and the inputs drawn from this grading's seed to a probe in a sandbox of its own
(:mod:`vaelab.teaching.grading.sandbox`, :mod:`vaelab.teaching.grading.probes`). Up to ``jobs`` probes run
at once, across all submissions. The probe reports numbers; this process — which never
runs student code — decides pass or fail (:mod:`vaelab.teaching.grading.verdicts`). The CSV and
the feedback files are written once every submission is graded, each atomically.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import math
import os
import queue
import secrets
import signal
import sys
from pathlib import Path

from vaelab import choices, machine, signals
from vaelab.core.config import UsageError
from vaelab.teaching.grading import exercises, reports, sandbox, verdicts
from vaelab.teaching.grading.exercises import EXERCISES
from vaelab.teaching.grading.verdicts import Result
from vaelab.teaching.grading.wire import Report, Unusable

DEFAULT_TIMEOUT = choices.GRADING_TIMEOUT  # seconds per exercise
DEFAULT_MEMORY = choices.GRADING_MEMORY  # MiB of address space per probe process
WAIT_ROUND = 0.2  # seconds between looks for a lost Ctrl-C while probes run


@dataclasses.dataclass(frozen=True)
class Settings:
    """One grading: the seed its inputs are drawn from, the limits, where probes run."""

    seed: int
    timeout: float = DEFAULT_TIMEOUT
    jobs: int = 2
    box: sandbox.Sandbox = sandbox.Sandbox(None)
    limits: sandbox.Limits = sandbox.Limits.for_grading(DEFAULT_TIMEOUT, DEFAULT_MEMORY)


def settings(seed: int | None = None, timeout: float = DEFAULT_TIMEOUT, jobs: int | None = None,
             use_sandbox: bool = True, memory: int = DEFAULT_MEMORY,
             scratch: int | None = None) -> Settings:
    """Checked settings (``UsageError`` naming the bad value), with the sandbox detected.
    ``seed=None`` draws one; ``jobs=None`` is the number of cores."""
    if (isinstance(timeout, bool) or not math.isfinite(timeout)
            or not 0 < timeout <= choices.MAX_WAIT_SECONDS):
        raise UsageError(f"--timeout must be a positive number of seconds, at most "
                         f"{choices.MAX_WAIT_SECONDS}, received {timeout:g}")
    cores, mebibytes = machine.usable_cores(), machine.memory_bytes() // 2**20
    jobs = cores if jobs is None else jobs
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise UsageError(f"--jobs must be a whole number of at least 1, received {jobs}")
    if jobs > cores:  # each probe would run slower than alone and could miss its time-out
        raise UsageError(f"--jobs {jobs} is more than the {cores} cores this machine gives "
                         f"vaelab; checks running at once share them, so at most {cores}")
    if isinstance(memory, bool) or not isinstance(memory, int) or not 256 <= memory <= mebibytes:
        raise UsageError(f"--memory must be from 256 to {mebibytes} (MiB, this machine's "
                         f"memory), received {memory}")
    if scratch is not None and not use_sandbox:
        raise UsageError("--scratch sizes the sandbox's /tmp; it cannot be used with --no-sandbox")
    if scratch is not None and (isinstance(scratch, bool) or not isinstance(scratch, int)
                                or not 1 <= scratch <= mebibytes):
        raise UsageError(f"--scratch must be from 1 to {mebibytes} (MiB, this machine's memory: "
                         f"the /tmp lives in it), received {scratch}")
    seed = secrets.randbelow(exercises.SEED_RANGE) if seed is None else seed
    exercises.draw(seed)  # checks the seed
    limits = sandbox.Limits.for_grading(timeout, memory)
    if scratch is not None:
        limits = dataclasses.replace(limits, scratch_bytes=scratch * 2**20)
    box = sandbox.detect(limits) if use_sandbox else sandbox.Sandbox(None)
    return Settings(seed, timeout, jobs, box, limits)


def outcome_result(outcome: sandbox.Outcome, exercise: str, inputs: dict,
                   timeout: float) -> Result:
    """The verdict on what a probe left behind."""
    if outcome.timed_out:
        return Result("fail", f"ran longer than {timeout:g} s (an endless loop?)")
    if outcome.too_large:
        return Result("fail", f"its output was larger than {sandbox.REPORT_BYTES // 2**20} MiB")
    if outcome.returncode != 0:
        status = outcome.returncode
        if status < 0:
            name = signal.Signals(-status).name if -status in signal.valid_signals() else status
            why = {"SIGXCPU": "its CPU time limit was reached",
                   "SIGKILL": "it was killed"}.get(str(name), f"it got {name}")
            return Result("fail", f"the check's process ended: {why}"
                          + (f" ({outcome.log_line()})" if outcome.log_line() else ""))
        return Result("fail", f"the check's process ended with status {status} "
                              f"({outcome.log_line() or 'no output'})")
    if not outcome.report:
        return Result("fail", "the check's process ended before it reported (status 0)")
    try:
        report = Report(outcome.report)
    except Unusable as exc:
        return Result("fail", f"the check's report is unusable: {exc}")
    return verdicts.decide(exercise, inputs, report)


def _prepare(path) -> tuple[dict[str, Result], dict[str, str]]:
    """``(results known without running anything, {exercise: cell} to probe})``."""
    found = exercises.locate(exercises.code_cells(path))
    if not any(found.values()):
        raise UsageError(f"{path}: no exercise of the tutorial found (is it the lab's notebook?)")
    todo, known, cells = exercises.hints(), {}, {}
    for exercise in EXERCISES:
        cell = found[exercise.name]
        if cell is None:
            known[exercise.name] = Result("fail", f"no code cell contains {exercise.anchor!r}")
        elif exercises.still_raises(cell, todo[exercise.block]):
            known[exercise.name] = Result("not attempted")
        else:
            cells[exercise.name] = cell
    return known, cells


def grade(paths, config: Settings, progress: reports.Progress | None = None
          ) -> tuple[list[dict], list[tuple[str, str]]]:
    """``(graded, errors)``: a record per usable submission (in the order given) and
    ``(file, message)`` per unusable one."""
    inputs = exercises.draw(config.seed)
    results: dict[int, dict[str, Result]] = {}
    errors, tasks = [], []
    for index, path in enumerate(paths):
        try:
            known, cells = _prepare(path)
        except UsageError as exc:
            errors.append((str(path), str(exc)))
            if progress:
                progress.add("unusable")
            continue
        results[index] = known
        tasks += [(index, name, cell) for name, cell in cells.items()]
    slots, running = queue.Queue(), set()
    for slot in range(config.jobs):
        slots.put(slot)

    def probe(task):
        index, name, cell = task
        slot = slots.get()
        try:
            request = {"exercise": name, "cell": cell, "inputs": inputs[name],
                       "limits": config.limits.as_dict(config.box.bwrap is not None)}
            return sandbox.run(config.box, request, config.timeout, slot, running)
        finally:
            slots.put(slot)

    def finished(index):
        if progress and len(results[index]) == len(EXERCISES):
            passed = all(r.status == "pass" for r in results[index].values())
            progress.add("passed" if passed else "failed")

    for index in [i for i in results if len(results[i]) == len(EXERCISES)]:
        finished(index)
    pool, futures = concurrent.futures.ThreadPoolExecutor(max_workers=config.jobs), {}
    try:
        futures = {pool.submit(probe, task): task for task in tasks}
        waiting = set(futures)
        while waiting:
            done, waiting = concurrent.futures.wait(
                waiting, timeout=WAIT_ROUND, return_when=concurrent.futures.FIRST_COMPLETED)
            signals.check()  # a Ctrl-C whose exception was lost still stops the class
            for future in done:
                index, name, _ = futures[future]
                results[index][name] = outcome_result(future.result(), name, inputs[name],
                                                      config.timeout)
                finished(index)
    finally:  # normally all done; after Ctrl-C or a crash, no probe outlives the grader
        pool.shutdown(wait=False, cancel_futures=True)
        pending = [f for f in futures if not f.done()]
        while pending:
            for child in list(running):
                sandbox.stop(child)
            _, pending = concurrent.futures.wait(pending, timeout=0.2)
        pool.shutdown(wait=True)
    graded = []
    for index, known in results.items():
        passed = sum(r.status == "pass" for r in known.values())
        graded.append({"file": str(paths[index]), "score": passed, "total": len(EXERCISES),
                       "exercises": {e.name: dataclasses.asdict(known[e.name])
                                     for e in EXERCISES}})
    return graded, errors


def check_file(path, timeout: float = DEFAULT_TIMEOUT, seed: int | None = None,
               use_sandbox: bool = True) -> dict[str, Result]:
    """Every exercise's result for one submission, on the inputs of ``seed`` (``None``: a
    fresh one); ``UsageError`` for unusable input or where no sandbox can be made."""
    graded, errors = grade([Path(path)], settings(seed, timeout, use_sandbox=use_sandbox))
    if errors:
        raise UsageError(errors[0][1])
    return {name: Result(**r) for name, r in graded[0]["exercises"].items()}


def feedback_paths(arguments, paths: list[Path], folder) -> dict[Path, Path]:
    """Where each submission's feedback goes: ``FOLDER/<file name>.md`` for a file given by
    name, ``FOLDER/<path inside the folder>.md`` for one found in a given folder.
    ``UsageError`` when two would share a file."""
    folder, out = Path(folder), {}
    folders = [Path(a) for a in arguments if Path(a).is_dir()]
    for path in paths:
        inside = next((path.relative_to(f) for f in folders if path.is_relative_to(f)), None)
        target = folder / f"{inside or path.name}.md"
        if target in out.values():
            other = next(p for p, t in out.items() if t == target)
            raise UsageError(f"--feedback: {other} and {path} would share {target}; grade them "
                             f"from their folders or rename one")
        out[path] = target
    return out


def _check_folder(folder, option: str) -> None:
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{option} {folder} is a file; name a folder for the feedback files")
    nearest = next(p for p in (folder, *folder.absolute().parents) if p.exists())
    if not nearest.is_dir() or not os.access(nearest, os.W_OK | os.X_OK):
        raise UsageError(f"{option} {folder}: {nearest} is not a writable folder")


def _check_csv_apart(csv_path: Path, paths: list[Path], feedback, targets: dict) -> None:
    """``--csv`` must not be a submission, the feedback folder or one of its files: one
    write would replace (or fail on) the other."""
    where = csv_path.resolve()
    if where in {p.resolve() for p in paths}:
        raise UsageError(f"--csv {csv_path} is one of the submissions; name another file")
    if feedback is not None and (where == Path(feedback).resolve()
                                 or where in {t.resolve() for t in targets.values()}):
        raise UsageError(f"--csv {csv_path} is the --feedback folder or one of its files; "
                         f"name another file")


def main(submissions, as_json: bool = False, csv_path=None, timeout: float = DEFAULT_TIMEOUT,
         jobs: int | None = None, seed: int | None = None, feedback=None,
         use_sandbox: bool = True, memory: int = DEFAULT_MEMORY, scratch: int | None = None
         ) -> int:
    """``vaelab tutorial check``: check everything, grade, print, write; the exit status.

    0: every exercise of every file passes; 1: some fail or are not attempted; 2: some
    file is unusable (the others are still graded and reported), or bad options (then
    nothing is graded or written).
    """
    from vaelab.store import files as store
    if csv_path:
        store.check_output_file(csv_path, "--csv")
    if feedback is not None:
        _check_folder(feedback, "--feedback")
    paths = exercises.submissions(submissions)
    targets = feedback_paths(submissions, paths, feedback) if feedback is not None else {}
    if csv_path:
        _check_csv_apart(Path(csv_path), paths, feedback, targets)
    config = settings(seed, timeout, jobs, use_sandbox, memory, scratch)
    if not use_sandbox:
        print("vaelab: warning: --no-sandbox: students' code runs with your rights, without "
              "isolation or a process limit", file=sys.stderr)
    graded, errors = grade(paths, config, reports.Progress(len(paths)))
    signals.check()  # nothing printed or written after a Ctrl-C
    mode = config.box.mode
    if as_json:
        print(json.dumps({"seed": config.seed, "sandbox": mode, "graded": graded,
                          "errors": [{"file": f, "error": e} for f, e in errors]}, indent=1))
    elif graded:
        print(reports.text_report(graded))
        print(f"(seed {config.seed}, sandbox: {mode}; --seed {config.seed} regrades with the "
              f"same inputs)")
    by_file = {r["file"]: r for r in graded}
    failed = dict(errors)
    for path, target in targets.items():
        target.parent.mkdir(parents=True, exist_ok=True)
        store.write_text(target, reports.feedback(by_file.get(str(path)), str(path),
                                                 failed.get(str(path)), config.seed, mode))
    if csv_path:
        store.write_text(csv_path, reports.csv_report(graded, errors, config.seed, mode))
    for _, message in errors:
        print(f"vaelab: error: {message}", file=sys.stderr)
    if errors:
        return 2
    return 0 if all(r["score"] == r["total"] for r in graded) else 1
