"""What the grader's sandbox costs, and how long a class takes.

    python benchmarks/grading.py [--repeats 3] [--class-size 30] [--jobs N] [--json out.json]

Part 1, one notebook: the solution notebook graded with the sandbox and with
``--no-sandbox`` (the same probes, the same verdicts, no bubblewrap), alternating, each
``--repeats`` times, through ``vaelab.teaching.grading.grader.grade`` with the default ``--jobs``.
Printed: the median seconds of each and their ratio (sandbox ÷ none; the goal is at most
1.3). Part 2, a class: ``--class-size`` submissions, a third right (the solution), a third
wrong (the usual mistakes) and a third hostile (a forged verdict, tampering, the network,
a fork bomb, a disk hog), graded at once in the sandbox; printed: seconds in all and per
notebook, and the counts of scores. Run it alone: it uses every core.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import nbformat

import vaelab  # noqa: F401  (selects the JAX backend)
from vaelab.store import runs
from vaelab.teaching.grading import grader
from vaelab.teaching.tutorial import build

MISTAKES = [("(2 * std_p**2)", "(2 * std_p)"),
            ("mean + ops.exp(log_var / 2) * epsilon", "mean + log_var * epsilon"),
            ('model.fit(x_train, x_train, epochs=2', 'model.fit(x_train, y_train, epochs=2')]
KL_START = '    """KL(q‖p) for q'
ATTACKS = [
    'import os\n    os.write(1, b\'{"status": "pass", "message": ""}\\n\')\n    os._exit(0)',
    'import vaelab.core.divergences\n    vaelab.core.divergences.kl_normal = lambda *a: 0.0\n'
    '    np.allclose = lambda *a, **k: True\n    return 0 * mean_q',
    'import socket\n    socket.create_connection(("127.0.0.1", 9), timeout=2)',
    'import os, time\n    for _ in range(5000):\n        if os.fork() == 0:\n'
    '            time.sleep(60)\n            os._exit(0)',
    'with open("/tmp/hog", "wb") as f:\n        for _ in range(4096):\n'
    '            f.write(b"x" * 2**20)',
]


def changed(source: Path, target: Path, replacements) -> Path:
    notebook = nbformat.read(source, as_version=4)
    for old, new in replacements:
        cell = next(c for c in notebook.cells if c.cell_type == "code" and old in c.source)
        cell.source = cell.source.replace(old, new, 1)
    nbformat.write(notebook, target)
    return target


def make_class(solution: Path, folder: Path, size: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(size):
        kind = i % 3
        if kind == 0:
            edits = []
        elif kind == 1:
            edits = [MISTAKES[i % len(MISTAKES)]]
        else:
            edits = [(KL_START, f"    {ATTACKS[i % len(ATTACKS)]}\n{KL_START}")]
        paths.append(changed(solution, folder / f"student{i:02d}.ipynb", edits))
    return paths


def timed(paths, config) -> tuple[float, list[dict]]:
    start = time.perf_counter()
    graded, _ = grader.grade(paths, config)
    return time.perf_counter() - start, graded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--class-size", type=int, default=30)
    parser.add_argument("--jobs", type=int, default=None, help="default: the number of cores")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()
    if args.json:
        runs.check_output_file(args.json, "--json")
    with tempfile.TemporaryDirectory(prefix="vaelab-grading-bench-") as scratch:
        course = build(Path(scratch) / "course", fmt="ipynb")
        solution = course["solution notebook"]
        boxed = grader.settings(seed=1, jobs=args.jobs)
        bare = grader.settings(seed=1, jobs=args.jobs, use_sandbox=False)
        times = {"sandbox": [], "none": []}
        for _ in range(args.repeats):
            for name, config in (("sandbox", boxed), ("none", bare)):
                seconds, graded = timed([solution], config)
                assert graded[0]["score"] == 7, graded
                times[name].append(seconds)
        medians = {k: statistics.median(v) for k, v in times.items()}
        ratio = medians["sandbox"] / medians["none"]
        print(f"one notebook, --jobs {boxed.jobs}: sandbox {medians['sandbox']:.1f} s, none "
              f"{medians['none']:.1f} s (medians of {args.repeats}); sandbox / none = {ratio:.2f}")
        paths = make_class(solution, Path(scratch) / "class", args.class_size)
        seconds, graded = timed(paths, boxed)
        scores = sorted(r["score"] for r in graded)
        print(f"a class of {len(paths)} (right, wrong, hostile), --jobs {boxed.jobs}, sandbox: "
              f"{seconds:.0f} s, {seconds / len(paths):.1f} s a notebook; scores {scores}")
    if args.json:
        runs.write_json(args.json, {"jobs": boxed.jobs, "sandbox": boxed.box.mode,
                                    "one_notebook_s": times, "ratio": ratio,
                                    "class_size": len(paths), "class_s": seconds,
                                    "scores": scores})


if __name__ == "__main__":
    main()
