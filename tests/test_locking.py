"""One writer per run folder: an OS file lock held by train, --resume, --overwrite,
evaluate and explore; --overwrite removes only vaelab's own files."""

import os
import signal
import time

import pytest
from conftest import finish, make_idx_dir
from conftest import start_vaelab as start

from vaelab import cli
from vaelab.store import runs
TRAIN = ["--hidden-dim", "16", "--latent-dim", "3", "--batch-size", "16", "--quiet"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    make_idx_dir(folder, n_train=192, n_test=48)
    return folder


def test_two_trainings_into_one_folder_one_wins(tmp_path, data_dir):
    out = tmp_path / "same"
    args = ["train", *TRAIN, "--epochs", "2", "--data-dir", data_dir, "--out", out]
    children = [start(args), start(args)]
    results = sorted(finish(child)[::2] for child in children)  # (status, stderr)
    (ok, _), (refused, err) = results
    assert (ok, refused) == (0, 2), results
    assert err.count("\n") == 1 and err.startswith("vaelab: error: ")
    assert ("is in use by another vaelab process (PID " in err
            or "exists and is not empty (pass --overwrite to reuse it)" in err)
    assert runs.is_complete(out)


def test_overwrite_while_another_run_writes_is_refused(tmp_path, data_dir):
    """A is stopped (SIGSTOP) mid-training; B --overwrite must not touch the folder."""
    out = tmp_path / "same2"
    a = start(["train", *TRAIN, "--epochs", "200", "--kl-scale", "1", "--data-dir", data_dir,
               "--out", out])
    try:
        deadline = time.monotonic() + 90
        while not (out / "checkpoint" / "state.json").exists():
            assert a.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        os.kill(a.pid, signal.SIGSTOP)
        config_before = (out / "config.json").read_text()
        b = start(["train", *TRAIN, "--epochs", "1", "--seed", "2", "--data-dir", data_dir,
                   "--out", out, "--overwrite"])
        status, _, err = finish(b)
        assert status == 2
        assert err == (f"vaelab: error: {out} is in use by another vaelab process (PID {a.pid}); "
                       f"wait for it to finish or stop it\n")
        assert (out / "config.json").read_text() == config_before
        assert not (out / "metrics.json").exists()
    finally:
        os.kill(a.pid, signal.SIGKILL)
        a.wait()


def test_evaluate_explore_and_resume_wait_for_no_one(tmp_path, data_dir, capsys):
    out = tmp_path / "run"
    assert cli.main(["train", *TRAIN, "--epochs", "1", "--data-dir", str(data_dir),
                     "--out", str(out)]) == 0
    with runs.locked(out):  # another holder (here: this process, through another descriptor)
        for command in (["evaluate", str(out), "--k", "2", "--quiet"],
                        ["explore", str(out), "--out", str(tmp_path / "page.html")],
                        ["train", "--resume", str(out), "--quiet"],
                        ["train", *TRAIN, "--data-dir", str(data_dir), "--out", str(out),
                         "--overwrite"]):
            assert cli.main(command) == 2
            assert capsys.readouterr().err == (
                f"vaelab: error: {out} is in use by another vaelab process (PID {os.getpid()}); "
                f"wait for it to finish or stop it\n")
    assert cli.main(["evaluate", str(out), "--k", "2", "--quiet"]) == 0  # released


def test_overwrite_removes_only_vaelabs_files(tmp_path, data_dir):
    out = tmp_path / "run"
    assert cli.main(["train", *TRAIN, "--epochs", "1", "--data-dir", str(data_dir),
                     "--out", str(out)]) == 0
    assert cli.main(["evaluate", str(out), "--k", "2", "--quiet"]) == 0
    (out / "notes.txt").write_text("mine")
    (out / ".config.abcd.tmp.json").write_text("left by a killed write")
    assert cli.main(["train", *TRAIN, "--epochs", "1", "--seed", "3", "--data-dir",
                     str(data_dir), "--out", str(out), "--overwrite"]) == 0
    assert not (out / "evaluation.json").exists()
    assert not (out / ".config.abcd.tmp.json").exists()
    assert (out / "notes.txt").read_text() == "mine"
    assert runs.read_json(out / "config.json")["seed"] == 3
