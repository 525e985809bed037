"""``vaelab tutorial check``: full marks for the solution, zero for the student copy, each
typical mistake fails exactly its exercise with a message that names its effect; a class
graded at once (CSV, feedback, progress); every bad option refused before anything runs.
Hostile submissions: test_grading_sandbox.py."""

import csv
import io
import json
import os
import re

import nbformat
import pytest

from vaelab import cli, machine
from vaelab.teaching import grading
from vaelab.teaching.grading import exercises, grader, reports
from vaelab.teaching.tutorial import build

ALL = [e.name for e in grading.EXERCISES]

CORES, MEBIBYTES = machine.usable_cores(), machine.memory_bytes() // 2**20


@pytest.fixture(scope="module")
def notebooks(tmp_path_factory):
    out = tmp_path_factory.mktemp("class")
    paths = build(out)
    return out, paths


def mutate(source_path, target_path, replacements):
    """A copy of a notebook with ``(old, new)`` text replaced in its code cells (each once)."""
    notebook = nbformat.read(source_path, as_version=4)
    for old, new in replacements:
        cells = [c for c in notebook.cells if c.cell_type == "code" and old in c.source]
        assert len(cells) == 1, old
        cells[0].source = cells[0].source.replace(old, new, 1)
    nbformat.write(notebook, target_path)
    return target_path


def grade(capsys, *args):
    status = cli.main(["tutorial", "check", "--json", *map(str, args)])
    return status, json.loads(capsys.readouterr().out)


def test_solution_scores_full_marks_and_student_copy_zero(notebooks, capsys):
    out, paths = notebooks
    status, report = grade(capsys, paths["solution notebook"], paths["student notebook"],
                           paths["solution"])
    assert status == 1  # the student copy is not all passed
    solution, student, solution_py = report["graded"]
    assert (solution["score"], solution["total"]) == (7, 7)
    assert (solution_py["score"], solution_py["total"]) == (7, 7)
    assert student["score"] == 0
    assert {r["status"] for r in student["exercises"].values()} == {"not attempted"}
    assert list(solution["exercises"]) == ALL


def test_each_mistake_fails_exactly_its_exercise(notebooks, tmp_path, capsys):
    out, paths = notebooks
    solution = paths["solution notebook"]
    first = mutate(solution, tmp_path / "a.ipynb", [
        ("(2 * std_p**2)", "(2 * std_p)"),                                  # the handout's typo
        ("mean + ops.exp(log_var / 2) * epsilon", "mean + log_var * epsilon"),
        ("weight = min(1.0, (epoch - self.epoch_start) / self.duration_epochs)",
         "weight = min(1.0, epoch / self.duration_epochs)"),                 # starts at epoch 0
        ("annealed_model, _ = make_vae(kl_scale=kl_scale)",
         "annealed_model, _ = make_vae(kl_scale=kl_scale"),                  # a syntax error
    ])
    second = mutate(solution, tmp_path / "b.ipynb", [
        ("seed=self.seed_generator)\n        return", "seed=1)\n        return"),
        ('    """KL(q‖p) for q', '    while True:\n        pass\n    """KL(q‖p) for q'),
    ])
    status, report = grade(capsys, first, second, "--timeout", "25", "--seed", "9")
    assert status == 1
    a, b = (record["exercises"] for record in report["graded"])
    failed_a = {name for name, r in a.items() if r["status"] != "pass"}
    assert failed_a == {"kl_normal", "sampling_z", "annealing", "fresh_vae"}
    assert "KL(p‖p) must be 0" in a["kl_normal"]["message"]
    assert "2σ₁²" in a["kl_normal"]["message"]
    assert "log_var is used as a standard deviation" in a["sampling_z"]["message"]
    assert "counted from epoch 0" in a["annealing"]["message"]
    start, duration, _ = exercises.draw(9)["annealing"]["schedules"][0]
    assert f"with epoch_start {start}, duration {duration}: epoch {start} has weight " \
           f"{min(1, start / duration):g}, expected 0" in a["annealing"]["message"]
    assert a["fresh_vae"]["message"].startswith("syntax error in the exercise's cell, line")
    failed_b = {name for name, r in b.items() if r["status"] != "pass"}
    assert failed_b == {"kl_normal", "sampling_z"}
    assert "two calls return the same z" in b["sampling_z"]["message"]
    assert b["kl_normal"]["message"] == "ran longer than 25 s (an endless loop?)"


def test_wrong_targets_and_epochs_and_a_crash(notebooks, tmp_path, capsys):
    out, paths = notebooks
    wrong = mutate(paths["solution notebook"], tmp_path / "c.ipynb", [
        ('model, encoder = make_vae()\nmodel.compile(loss="mse", optimizer="adam")\n'
         'model.fit(x_train, x_train, epochs=2, verbose=2)',
         'model, encoder = make_vae()\nmodel.compile(loss="mae", optimizer="sgd")\n'
         'model.fit(x_train, y_train, epochs=5, verbose=2)'),
        ("kl = ops.mean(-0.5", "import os; os._exit(9); kl = ops.mean(-0.5"),
    ])
    status, report = grade(capsys, wrong)
    results = report["graded"][0]["exercises"]
    assert status == 1
    assert "the targets are y_train" in results["fit"]["message"]
    assert "loss is 'mae', expected the mean squared error" in results["compile"]["message"]
    assert results["sampling_kl"]["message"].startswith("the check's process ended with status 9")
    assert results["sampling_z"]["status"] == "fail"  # the same layer: it crashes there too
    assert {n for n, r in results.items() if r["status"] == "pass"} == {
        "kl_normal", "annealing", "fresh_vae"}


def test_csv_of_a_class_and_unusable_files(notebooks, tmp_path, capsys):
    out, paths = notebooks
    broken = tmp_path / "broken.ipynb"
    broken.write_text('{"cells": [')
    unrelated = tmp_path / "other.py"
    unrelated.write_text("print('hello')\n")
    grades = tmp_path / "grades.csv"
    status = cli.main(["tutorial", "check", str(paths["solution notebook"]), str(broken),
                       str(unrelated), "--csv", str(grades)])
    captured = capsys.readouterr()
    assert status == 2
    errors = captured.err.strip().splitlines()
    assert errors[0].startswith(f"vaelab: error: {broken} is not a readable notebook")
    assert errors[1] == (f"vaelab: error: {unrelated}: no exercise of the tutorial found "
                         f"(is it the lab's notebook?)")
    rows = list(csv.DictReader(grades.open()))
    assert [r["file"] for r in rows] == [str(paths["solution notebook"]), str(broken),
                                         str(unrelated)]
    assert rows[0]["score"] == "7" and rows[0]["kl_normal"] == "pass"
    assert rows[1]["score"] == "" and "not a readable notebook" in rows[1]["error"]


@pytest.mark.parametrize("name, text", [("notes.txt", "x"), ("lab.ipynb", "not json")])
def test_a_file_that_is_not_a_notebook_exits_2(tmp_path, capsys, name, text):
    path = tmp_path / name
    path.write_text(text)
    assert cli.main(["tutorial", "check", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err and "Traceback" not in err


def test_a_timeout_kills_what_the_student_code_started(notebooks, tmp_path):
    """On timeout the probe's whole sandbox goes, with a process the student's code started
    (found by a marker in its command line)."""
    import uuid

    from test_grading_sandbox import leftovers_after

    out, paths = notebooks
    marker = f"vaelab-spawned-{uuid.uuid4().hex}"
    spawner = mutate(paths["solution notebook"], tmp_path / "d.ipynb", [
        ('    """KL(q‖p) for q',
         f'    import subprocess, sys\n'
         f'    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", {marker!r}])\n'
         f'    while True:\n        pass\n    """KL(q‖p) for q'),
    ])
    results = grading.check_file(spawner, timeout=15)
    assert results["kl_normal"].message == "ran longer than 15 s (an endless loop?)"
    assert leftovers_after(marker) == []


@pytest.mark.parametrize("value", ["nan", "inf", "0", "-5"])
def test_timeout_must_be_a_positive_finite_number(notebooks, capsys, value):
    out, paths = notebooks
    assert cli.main(["tutorial", "check", str(paths["solution notebook"]), "--timeout",
                     value]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--timeout must be a positive number of seconds" in err


def test_a_class_folder_csv_feedback_and_the_same_seed_regrades_identically(notebooks, tmp_path,
                                                                             capsys):
    """A folder of submissions (one in a student's subfolder, one unusable), graded with
    --jobs 2: the CSV and one feedback file per student; the same seed gives the same
    results, the seed and sandbox are recorded."""
    out, paths = notebooks
    folder = tmp_path / "class"
    (folder / "bo").mkdir(parents=True)
    (folder / ".ipynb_checkpoints").mkdir()
    ada = mutate(paths["solution notebook"], folder / "ada.ipynb",
                 [("(2 * std_p**2)", "(2 * std_p)")])
    nbformat.write(nbformat.read(paths["student notebook"], as_version=4),
                   folder / "bo" / "lab11.ipynb")
    (folder / "cy.py").write_text("print('hello')\n")
    (folder / ".ipynb_checkpoints" / "ada-checkpoint.ipynb").write_text("{}")
    grades, feedback = tmp_path / "grades.csv", tmp_path / "feedback"
    args = ["tutorial", "check", str(folder), "--jobs", str(min(2, CORES)), "--seed", "77", "--csv",
            str(grades), "--feedback", str(feedback), "--json"]
    assert cli.main(args) == 2                           # cy.py has no exercise
    first = json.loads(capsys.readouterr().out)
    assert first["seed"] == 77 and first["sandbox"].startswith("bubblewrap")
    assert [r["file"] for r in first["graded"]] == [str(ada), str(folder / "bo" / "lab11.ipynb")]
    assert [r["score"] for r in first["graded"]] == [6, 0]
    assert first["errors"][0]["file"] == str(folder / "cy.py")
    rows = list(csv.DictReader(grades.open()))
    assert [(r["file"], r["score"], r["seed"]) for r in rows] == [
        (str(ada), "6", "77"), (str(folder / "bo" / "lab11.ipynb"), "0", "77"),
        (str(folder / "cy.py"), "", "77")]
    assert {r["sandbox"] for r in rows} == {first["sandbox"]}
    written = sorted(p.relative_to(feedback).as_posix() for p in feedback.rglob("*.md"))
    assert written == ["ada.ipynb.md", "bo/lab11.ipynb.md", "cy.py.md"]
    text = (feedback / "ada.ipynb.md").read_text()
    assert "**Score: 6/7**" in text and "KL(p‖p) must be 0" in text and "seed 77" in text
    assert "could not be graded: " in (feedback / "cy.py.md").read_text()
    assert cli.main(args) == 2
    again = json.loads(capsys.readouterr().out)
    assert again == first


def test_a_crash_leaves_the_earlier_csv_and_no_probe_running(notebooks, tmp_path, monkeypatch,
                                                            capsys):
    from test_grading_sandbox import OUR_PROBES, leftovers_after

    out, paths = notebooks
    grades = tmp_path / "grades.csv"
    grades.write_text("earlier grades\n")
    calls = []

    def crash(*args, **kwargs):
        calls.append(1)
        raise RuntimeError("the grader crashed")

    monkeypatch.setattr(grader, "outcome_result", crash)
    with pytest.raises(RuntimeError, match="the grader crashed"):
        cli.main(["tutorial", "check", str(paths["solution notebook"]), "--csv", str(grades),
                  "--seed", "1"])
    assert calls == [1]
    assert grades.read_text() == "earlier grades\n"
    assert leftovers_after(OUR_PROBES) == []


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the lost one
def test_a_lost_ctrl_c_stops_the_class_and_writes_nothing(notebooks, tmp_path, monkeypatch,
                                                          capsys, signal_handlers):
    """A Ctrl-C whose exception was dropped (it landed in a garbage-collector callback)
    while probes run: the wait for the probes raises it again, the others are stopped,
    status 130 and one line, no report, no CSV, no feedback."""
    from conftest import lose_a_ctrl_c
    from test_grading_sandbox import OUR_PROBES, leftovers_after

    out, paths = notebooks
    grades, feedback = tmp_path / "grades.csv", tmp_path / "feedback"
    grades.write_text("earlier grades\n")
    real, calls = grader.outcome_result, []

    def first_result_loses_a_ctrl_c(*args, **kwargs):
        if not calls:
            lose_a_ctrl_c()
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(grader, "outcome_result", first_result_loses_a_ctrl_c)
    status = cli.main(["tutorial", "check", str(paths["solution notebook"]),
                       str(paths["student notebook"]), "--csv", str(grades), "--feedback",
                       str(feedback), "--seed", "1", "--jobs", "1"])
    captured = capsys.readouterr()
    assert status == 130 and captured.err.strip().splitlines()[-1] == "vaelab: interrupted"
    assert 1 <= len(calls) < 2 * len(ALL) and captured.out == ""
    assert grades.read_text() == "earlier grades\n" and not feedback.exists()
    assert leftovers_after(OUR_PROBES) == []


def test_csv_cells_cannot_become_formulas():
    graded = [{"file": "=HYPERLINK(\"x\")", "score": 1, "total": 7,
               "exercises": {e.name: {"status": "pass", "message": ""}
                             for e in exercises.EXERCISES}}]
    rows = list(csv.reader(io.StringIO(reports.csv_report(graded, [("@x.py", "-bad")], 3,
                                                          "none"))))
    assert rows[1][0] == "'=HYPERLINK(\"x\")"
    assert rows[2][0] == "'@x.py" and rows[2][-3] == "'-bad"


def test_progress_counts_on_a_terminal_only():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    shown, hidden = Terminal(), io.StringIO()
    for stream in (shown, hidden):
        progress = reports.Progress(3, stream)
        for kind in ("passed", "unusable", "failed"):
            progress.add(kind)
    assert hidden.getvalue() == ""
    last = shown.getvalue().split("\r")[-1]
    assert last == "[" + "#" * 20 + "] 3/3 · 1 passed · 1 failed · 1 unusable\n"


@pytest.mark.parametrize("extra, message", [
    (["--jobs", "0"], "--jobs must be a whole number of at least 1, received 0"),
    (["--jobs", "-3"], "--jobs must be a whole number of at least 1, received -3"),
    (["--jobs", "two"], "argument --jobs: expected an integer, received 'two'"),
    (["--seed", "-1"], "--seed must be an integer from 0 to 4294967295, received -1"),
    (["--seed", "4294967296"], "--seed must be an integer from 0 to 4294967295, received "
                               "4294967296"),
    (["--no-sandbox", "--scratch", "64"], "--scratch sizes the sandbox's /tmp; it cannot be "
                                          "used with --no-sandbox"),
    (["--memory", "100"], "--memory must be from 256 to "),
    (["--memory", str(MEBIBYTES + 1)], f"--memory must be from 256 to {MEBIBYTES} (MiB, this "
                                       f"machine's memory), received {MEBIBYTES + 1}"),
    (["--scratch", str(MEBIBYTES + 1)], f"--scratch must be from 1 to {MEBIBYTES} (MiB, this "
                                        f"machine's memory: the /tmp lives in it), received "
                                        f"{MEBIBYTES + 1}"),
    (["--scratch", "0"], "--scratch must be from 1 to "),
    (["--jobs", str(CORES + 1)], f"--jobs {CORES + 1} is more than the {CORES} cores this "
                                 f"machine gives vaelab"),
    (["--timeout", "86401"], "--timeout must be a positive number of seconds, at most 86400, "
                             "received 86401"),
    (["--timeout", "1e300"], "--timeout must be a positive number of seconds, at most 86400"),
])
def test_bad_options_one_line_exit_2_nothing_written(notebooks, tmp_path, capsys, extra, message):
    out, paths = notebooks
    grades = tmp_path / "grades.csv"
    with pytest.raises(SystemExit) if "two" in extra else _no_raise() as caught:
        status = cli.main(["tutorial", "check", str(paths["solution notebook"]), "--csv",
                           str(grades), "--feedback", str(tmp_path / "fb"), *extra])
    status = caught.value.code if "two" in extra else status
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and message in err, err
    assert not grades.exists() and not (tmp_path / "fb").exists()


def test_the_csv_never_replaces_a_submission_or_the_feedback(notebooks, tmp_path, capsys):
    """Found by Hypothesis: --csv F --feedback F wrote the feedback folder, then failed with
    IsADirectoryError on the CSV; --csv SUBMISSION would have replaced a student's file."""
    _, paths = notebooks
    submission = tmp_path / "ada.ipynb"
    submission.write_bytes(paths["solution notebook"].read_bytes())
    before = submission.read_bytes()
    for csv, message in ((submission, f"--csv {submission} is one of the submissions; name "
                                      f"another file"),
                         (tmp_path / "fb", f"--csv {tmp_path / 'fb'} is the --feedback folder "
                                           f"or one of its files; name another file")):
        status = cli.main(["tutorial", "check", str(submission), "--csv", str(csv),
                           "--feedback", str(tmp_path / "fb")])
        err = capsys.readouterr().err
        assert status == 2 and err == f"vaelab: error: {message}\n"
        assert submission.read_bytes() == before and not (tmp_path / "fb").exists()


class _no_raise:
    value = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_feedback_that_is_a_file_and_a_folder_without_submissions(notebooks, tmp_path, capsys):
    out, paths = notebooks
    a_file = tmp_path / "feedback.md"
    a_file.write_text("x")
    assert cli.main(["tutorial", "check", str(paths["solution notebook"]), "--feedback",
                     str(a_file)]) == 2
    err = capsys.readouterr().err
    assert err == f"vaelab: error: --feedback {a_file} is a file; name a folder for the " \
                  f"feedback files\n"
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "notes.txt").write_text("x")
    assert cli.main(["tutorial", "check", str(empty)]) == 2
    assert capsys.readouterr().err == (f"vaelab: error: {empty} is a folder with no submission "
                                       f"in it (no .ipynb or .py file)\n")


def test_without_a_sandbox_it_refuses_unless_told(notebooks, tmp_path, capsys, monkeypatch):
    """No sandbox can be made (bwrap that fails): one line, exit 2, nothing graded or
    written; --no-sandbox grades and records it."""
    out, paths = notebooks
    monkeypatch.setenv("VAELAB_BWRAP", "/bin/false")
    grades = tmp_path / "grades.csv"
    args = ["tutorial", "check", str(paths["solution notebook"]), "--csv", str(grades)]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no sandbox can be made with /bin/false" in err
    assert "--no-sandbox grades without one" in err and not grades.exists()
    assert cli.main([*args, "--no-sandbox", "--seed", "4"]) == 0
    captured = capsys.readouterr()
    assert "--no-sandbox: students' code runs with your rights" in captured.err
    assert [(r["score"], r["sandbox"]) for r in csv.DictReader(grades.open())] == [("7", "none")]
