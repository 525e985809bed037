"""Folders a user may not write or read: one line, exit 2, nothing written, as an ordinary user.

CI runs as root, whom no file mode stops, so these commands run as uid 65534 there
(:mod:`unprivileged`); anywhere else as the user running the tests. Every case runs in one
child process (one import of JAX), which calls the CLI for each and reports its exit status
and standard error as JSON; the folders are made here, before, with modes that close them to
that user whoever it is.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest
from conftest import make_idx_dir
from unprivileged import needs_an_ordinary_user, open_folder, unprivileged

from vaelab.core.config import TrainConfig
from vaelab.training.trainer import train

pytestmark = [needs_an_ordinary_user,
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux modes")]

TINY = ["--epochs", "1", "--hidden-dim", "8", "--latent-dim", "2", "--batch-size", "16",
        "--quiet"]

# Runs in the child: each case through vaelab's CLI, standard error captured.
DRIVER = """
import contextlib, io, json, sys
from vaelab import cli
results = []
for args in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            status = cli.main(args)
        except SystemExit as exc:
            status = exc.code
        except Exception as exc:  # a traceback vaelab let through: reported, not fatal here
            status = f"uncaught {type(exc).__name__}: {exc}"
    results.append([status, err.getvalue()])
print(json.dumps(results))
"""


def set_modes(path, folder_mode, file_mode):
    for p in [path, *path.rglob("*")]:
        os.chmod(p, folder_mode if p.is_dir() else file_mode)


@pytest.fixture(scope="module")
def place():
    """A run, a data folder, a read-only folder, an empty read-only folder and a closed one."""
    base = open_folder()
    try:
        make_idx_dir(base / "data", n_train=64, n_test=32)
        train(TrainConfig(epochs=1, hidden_dim=8, latent_dim=2, batch_size=16,
                          data_dir=str(base / "data")), base / "run", verbose=False)
        shutil.copytree(base / "data", base / "closed")
        shutil.copytree(base / "run", base / "run-closed-lock")
        for name in ("ro", "ro-empty", "ro-cache"):
            (base / name).mkdir()
        (base / "out").mkdir()
        set_modes(base / "data", 0o755, 0o644)
        set_modes(base / "run", 0o555, 0o444)
        set_modes(base / "run-closed-lock", 0o555, 0o444)
        os.chmod(base / "run-closed-lock" / ".vaelab.lock", 0o000)
        for name in ("ro", "ro-empty", "ro-cache"):
            os.chmod(base / name, 0o555)
        os.chmod(base / "closed", 0o000)
        os.chmod(base / "out", 0o777)
        yield base
    finally:
        set_modes(base, 0o755, 0o644)
        shutil.rmtree(base, ignore_errors=True)


def run_cases(base, cases: list[list[str]], cache: str) -> list[tuple[int, str]]:
    env = {"HOME": str(base / "out"), "XDG_CACHE_HOME": str(base / cache),
           "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
           "KERAS_BACKEND": os.environ.get("KERAS_BACKEND", "jax")}
    command = unprivileged([sys.executable, "-c", DRIVER, json.dumps(cases)], env)
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             cwd=base / "out")
    try:
        out, err = child.communicate(timeout=300)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0, err[-3000:]
    return [tuple(r) for r in json.loads(out.strip().splitlines()[-1])]


def test_unwritable_and_unreadable_folders(place):
    b, data, run = place, str(place / "data"), place / "run"
    before = sorted(p.name for p in run.iterdir())
    cases = {  # args → (exit status, the whole standard error; None: empty)
        "train --out under a read-only folder": (
            ["train", *TINY, "--data-dir", data, "--out", str(b / "ro" / "x")],
            2, f"--out {b}/ro/x cannot be created ({b}/ro is not a writable folder)"),
        "train --out an empty read-only folder": (
            ["train", *TINY, "--data-dir", data, "--out", str(b / "ro-empty")],
            2, f"--out {b}/ro-empty is not writable"),
        "lab --out under a read-only folder": (
            ["lab", "--quick", "--quiet", "--data-dir", data, "--out", str(b / "ro" / "lab")],
            2, f"--out {b}/ro/lab cannot be created ({b}/ro is not a writable folder)"),
        "a data folder that cannot be read": (
            ["train", *TINY, "--data-dir", str(b / "closed"), "--out", str(b / "out" / "a")],
            2, f"data folder {b}/closed is not readable"),
        "data info on it": (
            ["data", "info", "--data-dir", str(b / "closed")],
            2, f"data folder {b}/closed is not readable"),
        "evaluate a read-only run": (
            ["evaluate", str(run), "--k", "2", "--quiet"],
            2, f"{run} is not writable (this command writes into the run folder)"),
        "resume a read-only run": (
            ["train", "--resume", str(run), "--quiet"],
            2, f"{run} is not writable (this command writes into the run folder)"),
        "sample into a read-only run": (
            ["sample", str(run)],
            2, f"{run} is not writable (this command writes into the run folder; --out "
               f"writes the file elsewhere)"),
        "explore into a read-only run": (
            ["explore", str(run)],
            2, f"{run} is not writable (this command writes into the run folder; --out "
               f"writes the file elsewhere)"),
        "explore --out into a read-only folder": (
            ["explore", str(run), "--out", str(b / "ro" / "e.html")],
            2, f"--out {b}/ro/e.html: {b}/ro is not writable"),
        "tutorial build under a read-only folder": (
            ["tutorial", "build", "--out", str(b / "ro" / "t")],
            2, f"--out {b}/ro/t: {b}/ro is not a writable folder"),
        "tutorial check --csv into a read-only folder": (
            ["tutorial", "check", "--no-sandbox", "--csv", str(b / "ro" / "g.csv"),
             str(b / "ro")],
            2, f"--csv {b}/ro/g.csv: {b}/ro is not writable"),
        "the cache cannot hold MNIST": (
            ["data", "fetch"],
            2, f"cannot create the MNIST cache {b}/ro-cache/vaelab/mnist: Permission denied "
               f"(set XDG_CACHE_HOME to a writable folder, or pass --data-dir)"),
        "a read-only run read into files elsewhere": (
            ["sample", str(run), "--out", str(b / "out" / "s.png"), "--n", "4"], 0, None),
        "a read-only run whose lock file cannot even be opened": (
            ["sample", str(b / "run-closed-lock"), "--out", str(b / "out" / "s2.png"), "--n",
             "4"], 0, None),
        "and its explorer": (
            ["explore", str(run), "--out", str(b / "out" / "e.html")], 0, None),
        "training with a read-only cache (compiled programs are not kept)": (
            ["train", *TINY, "--data-dir", data, "--out", str(b / "out" / "fine")], 0, None),
    }
    results = run_cases(b, [args for args, _, _ in cases.values()], "ro-cache")
    for (name, (_, status, message)), (got_status, err) in zip(cases.items(), results,
                                                               strict=True):
        expected = "" if message is None else f"vaelab: error: {message}\n"
        assert (got_status, err) == (status, expected), name
    # Nothing written where it could not be, everything where it could.
    assert sorted(p.name for p in run.iterdir()) == before
    for name in ("ro", "ro-empty", "ro-cache"):
        assert list((b / name).iterdir()) == []
    for name in ("s.png", "s2.png"):
        assert (b / "out" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<html" in (b / "out" / "e.html").read_text()[:200].lower()
    assert (b / "out" / "fine" / "metrics.json").is_file()
    assert not (b / "out" / "a").exists()
