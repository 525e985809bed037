"""What the grader writes: the text report, the CSV of a class, one feedback file per
student, and the progress line while a class is graded."""

from __future__ import annotations

import csv
import io
import sys

from vaelab.teaching.grading.exercises import EXERCISES
from vaelab.teaching.grading.verdicts import Result


def text_report(graded: list[dict]) -> str:
    lines = []
    for record in graded:
        lines.append(f"{record['file']}: {record['score']}/{record['total']}")
        for exercise in EXERCISES:
            result = Result(**record["exercises"][exercise.name])
            lines.append(f"  {exercise.name} ({exercise.title}): {result.line()}")
    return "\n".join(lines)


def _cell(text) -> str:
    """A CSV cell a spreadsheet shows as text: a leading ``= + - @`` (a formula to Excel or
    LibreOffice, and file names are the students') gets a ``'`` before it."""
    text = str(text)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def csv_report(graded: list[dict], errors: list[tuple[str, str]], seed: int, mode: str) -> str:
    """One row per submission: file, score, total, each exercise's status, the error of an
    unusable file, and the seed and sandbox the grading used."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["file", "score", "total", *(e.name for e in EXERCISES), "error", "seed",
                     "sandbox"])
    for record in graded:
        writer.writerow([_cell(record["file"]), record["score"], record["total"],
                         *(record["exercises"][e.name]["status"] for e in EXERCISES), "", seed,
                         mode])
    for path, message in errors:
        writer.writerow([_cell(path), "", "", *([""] * len(EXERCISES)), _cell(message), seed,
                         mode])
    return buffer.getvalue()


def feedback(record: dict | None, path: str, error: str | None, seed: int, mode: str) -> str:
    """A student's feedback (Markdown): the score, then each exercise's verdict and message."""
    lines = [f"# Lab 11: feedback on `{path}`", ""]
    if record is None:
        lines += [f"This file could not be graded: {error}", ""]
    else:
        lines += [f"**Score: {record['score']}/{record['total']}**", "",
                  "| exercise | verdict | details |", "|---|---|---|"]
        for exercise in EXERCISES:
            result = record["exercises"][exercise.name]
            details = result["message"].replace("|", "\\|") or "—"
            lines.append(f"| {exercise.title} (`{exercise.name}`) | {result['status']} | "
                         f"{details} |")
        lines.append("")
    lines.append(f"Graded by vaelab tutorial check (seed {seed}, sandbox: {mode}).")
    return "\n".join(lines) + "\n"


class Progress:
    """``[#####.....] 12/30 · 5 passed · 6 failed · 1 unusable`` on standard error, redrawn
    in place; only on a terminal (a log or a pipe gets nothing)."""

    def __init__(self, total: int, stream=None):
        self.stream = stream if stream is not None else sys.stderr
        self.total, self.counts = total, {"passed": 0, "failed": 0, "unusable": 0}
        self.shown = self.stream.isatty() and total > 1

    def add(self, kind: str) -> None:
        self.counts[kind] += 1
        if self.shown:
            done = sum(self.counts.values())
            bar = "#" * (20 * done // self.total)
            self.stream.write(f"\r[{bar:<20}] {done}/{self.total} · "
                              + " · ".join(f"{n} {k}" for k, n in self.counts.items()))
            if done == self.total:
                self.stream.write("\n")
            self.stream.flush()
