"""``vaelab tutorial check``: an autograder for the tutorial's exercises.

A submission is a notebook (``.ipynb``) or a percent-format Python file (``.py``) made
from the student copy. For each exercise the grader finds the code cell that holds it
(by the definition or statement the exercise fills in, so added or moved cells do not
matter), says ``not attempted`` while the student copy's ``raise NotImplementedError``
for that exercise is still there, and otherwise runs the exercise's check
(:mod:`vaelab.grading_checks`) in a subprocess of its own with a time limit: an endless
loop, an exception or a crash in one exercise fails that exercise alone. The checks
compare the student's code with the package's own reference (``vaelab.divergences``,
``vaelab.schedules`` and the tutorial's solution) and say what differs, with numbers.
"""

from __future__ import annotations

import concurrent.futures
import csv
import dataclasses
import io
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

from vaelab.config import UsageError
from vaelab.tutorial import DEFAULT_SOURCE, parse_blocks

DEFAULT_TIMEOUT = 120  # seconds per exercise


@dataclasses.dataclass(frozen=True)
class Exercise:
    name: str       # the key in reports and the check's name in grading_checks
    title: str      # one line for the student
    anchor: str     # text that only the exercise's cell contains
    block: int      # index of its marked block in the tutorial source (for its hint)


EXERCISES = [
    Exercise("kl_normal", "1(c) formula (a) as a function", "def kl_normal", 0),
    Exercise("sampling_kl", "the sampling layer's KL term", "class TutorialSampling", 1),
    Exercise("sampling_z", "the reparametrization trick", "class TutorialSampling", 2),
    Exercise("compile", "compile the VAE", "def make_vae", 3),
    Exercise("fit", "fit the VAE", "def make_vae", 4),
    Exercise("annealing", "the annealing weight per epoch", "class KLAnnealingCallback", 5),
    Exercise("fresh_vae", "a fresh VAE per KL scale", "for name, kl_scale in", 6),
]


@dataclasses.dataclass
class Result:
    status: str     # "pass", "fail" or "not attempted"
    message: str = ""

    def line(self) -> str:
        return f"fail: {self.message}" if self.status == "fail" else self.status


def hints() -> list[str]:
    """The hint of each marked block of the tutorial, in order."""
    lines = DEFAULT_SOURCE.read_text(encoding="utf-8").splitlines(keepends=True)
    return [block.hint for block in parse_blocks(lines, str(DEFAULT_SOURCE))]


def code_cells(path) -> list[str]:
    """The code cells of a notebook or percent-format file; ``UsageError`` if it is neither."""
    import jupytext
    import nbformat

    path = Path(path)
    if path.suffix not in (".ipynb", ".py"):
        raise UsageError(f"{path}: expected a notebook (.ipynb) or a Python file (.py)")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path} cannot be read ({getattr(exc, 'strerror', None) or exc})") from None
    try:
        if path.suffix == ".ipynb":
            notebook = nbformat.reads(text, as_version=4)
        else:
            notebook = jupytext.reads(text, fmt="py:percent")
        return [cell.source for cell in notebook.cells if cell.cell_type == "code"]
    except Exception as exc:  # nbformat/jupytext raise many kinds for damaged files  # noqa: BLE001
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise UsageError(f"{path} is not a readable notebook ({reason})") from None


def locate(cells: list[str]) -> dict[str, str | None]:
    """The cell of each exercise (``None`` where its anchor is in no cell)."""
    return {e.name: next((c for c in cells if e.anchor in c), None) for e in EXERCISES}


def check_file(path, timeout: float = DEFAULT_TIMEOUT, workers: int = 2) -> dict[str, Result]:
    """Every exercise's result for one submission; ``UsageError`` for unusable input."""
    found = locate(code_cells(path))
    if not any(found.values()):
        raise UsageError(f"{path}: no exercise of the tutorial found (is it the lab's notebook?)")
    todo = hints()
    results: dict[str, Result] = {}
    pending = {}
    for exercise in EXERCISES:
        cell = found[exercise.name]
        if cell is None:
            results[exercise.name] = Result("fail", f"no code cell contains {exercise.anchor!r}")
        elif _still_raises(cell, todo[exercise.block]):
            results[exercise.name] = Result("not attempted")
        else:
            pending[exercise.name] = cell
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {name: pool.submit(run_check, name, cell, timeout)
                   for name, cell in pending.items()}
        for name, future in futures.items():
            results[name] = future.result()
    return {e.name: results[e.name] for e in EXERCISES}


def _still_raises(cell: str, hint: str) -> bool:
    """Whether the student copy's ``raise NotImplementedError('TODO: <hint>')`` is still
    there (a line of code, not a comment)."""
    return any(line.strip().startswith("raise NotImplementedError") and hint in line
               for line in cell.splitlines())


def run_check(name: str, cell: str, timeout: float) -> Result:
    """Run one exercise's check in a fresh Python process, bounded by ``timeout`` seconds.

    The process leads a session of its own: on timeout the whole group is killed, with
    whatever the student's code may have started.
    """
    request = json.dumps({"exercise": name, "cell": cell})
    child = subprocess.Popen([sys.executable, "-m", "vaelab.grading_checks"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = child.communicate(request, timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(child)
        child.communicate()  # reap it and close its pipes
        return Result("fail", f"ran longer than {timeout:g} s (an endless loop?)")
    _kill_group(child)  # anything the student's code left running in the group
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if child.returncode != 0 or not lines:
        tail = (stderr.strip().splitlines() or ["no output"])[-1][:200]
        return Result("fail", f"the check's process ended with status {child.returncode} ({tail})")
    answer = json.loads(lines[-1])
    return Result(answer["status"], answer.get("message", ""))


def _kill_group(child: subprocess.Popen) -> None:
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):  # the group is already empty
        pass


def check_files(paths, timeout: float = DEFAULT_TIMEOUT
                ) -> tuple[list[dict], list[tuple[str, str]]]:
    """``(graded, errors)``: a record per usable submission, ``(file, message)`` per unusable one."""
    graded, errors = [], []
    for path in paths:
        try:
            results = check_file(path, timeout)
        except UsageError as exc:
            errors.append((str(path), str(exc)))
            continue
        passed = sum(r.status == "pass" for r in results.values())
        graded.append({"file": str(path), "score": passed, "total": len(results),
                       "exercises": {name: dataclasses.asdict(r) for name, r in results.items()}})
    return graded, errors


def text_report(graded: list[dict]) -> str:
    lines = []
    for record in graded:
        lines.append(f"{record['file']}: {record['score']}/{record['total']}")
        for exercise in EXERCISES:
            result = Result(**record["exercises"][exercise.name])
            lines.append(f"  {exercise.name} ({exercise.title}): {result.line()}")
    return "\n".join(lines)


def csv_report(graded: list[dict], errors: list[tuple[str, str]]) -> str:
    """One row per submission: file, score, total, then each exercise's status."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["file", "score", "total", *(e.name for e in EXERCISES), "error"])
    for record in graded:
        writer.writerow([record["file"], record["score"], record["total"],
                         *(record["exercises"][e.name]["status"] for e in EXERCISES), ""])
    for path, message in errors:
        writer.writerow([path, "", "", *([""] * len(EXERCISES)), message])
    return buffer.getvalue()


def main(submissions, as_json: bool = False, csv_path=None,
         timeout: float = DEFAULT_TIMEOUT) -> int:
    """``vaelab tutorial check``: grade, print, write the CSV; the exit status.

    0: every exercise of every file passes; 1: some fail or are not attempted; 2: some
    file is unusable (the others are still graded and reported).
    """
    from vaelab import runs

    if isinstance(timeout, bool) or not math.isfinite(timeout) or timeout <= 0:
        raise UsageError(f"--timeout must be a positive number of seconds, received {timeout:g}")
    if csv_path:
        runs.check_output_file(csv_path, "--csv")
    graded, errors = check_files(submissions, timeout=timeout)
    if as_json:
        print(json.dumps({"graded": graded,
                          "errors": [{"file": f, "error": e} for f, e in errors]}, indent=1))
    elif graded:
        print(text_report(graded))
    if csv_path:
        runs.write_text(csv_path, csv_report(graded, errors))
    for _, message in errors:
        print(f"vaelab: error: {message}", file=sys.stderr)
    if errors:
        return 2
    return 0 if all(r["score"] == r["total"] for r in graded) else 1
