"""``vaelab tutorial check``: full marks for the solution, zero for the student copy, and
each typical mistake fails exactly its exercise with a message that names its effect."""

import csv
import json

import nbformat
import pytest

from vaelab import cli, grading
from vaelab.tutorial import build

ALL = [e.name for e in grading.EXERCISES]


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
    status, report = grade(capsys, first, second, "--timeout", "25")
    assert status == 1
    a, b = (record["exercises"] for record in report["graded"])
    failed_a = {name for name, r in a.items() if r["status"] != "pass"}
    assert failed_a == {"kl_normal", "sampling_z", "annealing", "fresh_vae"}
    assert "KL(p‖p) must be 0" in a["kl_normal"]["message"]
    assert "2σ₁²" in a["kl_normal"]["message"]
    assert "log_var is used as a standard deviation" in a["sampling_z"]["message"]
    assert "counted from epoch 0" in a["annealing"]["message"]
    assert "epoch 4 has weight 0.5, expected 0" in a["annealing"]["message"]
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


def test_a_timeout_kills_what_the_student_code_started(notebooks, tmp_path, capsys):
    """The check runs in a session of its own: on timeout the whole process group goes,
    including a process the student's code started (found by its PID)."""
    import os
    import time

    out, paths = notebooks
    pid_file = tmp_path / "pid"
    spawner = mutate(paths["solution notebook"], tmp_path / "d.ipynb", [
        ('    """KL(q‖p) for q',
         f'    import subprocess\n    child = subprocess.Popen(["sleep", "300"])\n'
         f'    open({str(pid_file)!r}, "w").write(str(child.pid))\n'
         f'    while True:\n        pass\n    """KL(q‖p) for q'),
    ])
    results = grading.check_file(spawner, timeout=15)
    assert results["kl_normal"].message == "ran longer than 15 s (an endless loop?)"
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        os.kill(pid, 9)
        pytest.fail(f"the student's child process {pid} outlived the check")


@pytest.mark.parametrize("value", ["nan", "inf", "0", "-5"])
def test_timeout_must_be_a_positive_finite_number(notebooks, capsys, value):
    out, paths = notebooks
    assert cli.main(["tutorial", "check", str(paths["solution notebook"]), "--timeout",
                     value]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--timeout must be a positive number of seconds" in err
