"""vaelab launch: its command lines and its refusals (the jobs it runs: test_multiprocess.py)."""

import sys

import pytest

from vaelab import cli, machine
from vaelab.core.config import UsageError
from vaelab.dist import launch


@pytest.fixture(autouse=True)
def two_roomy_cores(monkeypatch):
    """The command-line refusals below come after the machine's size is checked; a
    two-core machine with room (CI's) keeps them from depending on where the suite runs
    (under ``taskset -c 0`` there is one core). The size refusals set their own."""
    monkeypatch.setattr(machine, "usable_cores", lambda: 2)
    monkeypatch.setattr(machine, "memory_bytes", lambda: 64 * 2**30)


def test_each_process_gets_the_job_and_distribute():
    commands = launch.commands(2, ["train", "--epochs", "3"], 4321)
    assert commands == [
        [sys.executable, "-m", "vaelab", "train", "--epochs", "3", "--distribute",
         "--coordinator", "127.0.0.1:4321", "--num-processes", "2", "--process-id", str(i)]
        for i in range(2)]
    given = launch.commands(1, ["train", "--distribute"], 4321)[0]
    assert given.count("--distribute") == 1


@pytest.mark.parametrize("argv, message", [
    (["launch", "--num-processes", "0", "--", "train"],
     "--num-processes must be at least 1, received 0"),
    (["launch", "--num-processes", "2", "--", "evaluate", "run"],
     "vaelab launch runs train: give -- train [OPTIONS], received evaluate run"),
    (["launch", "--num-processes", "2"],
     "vaelab launch runs train: give -- train [OPTIONS], received nothing"),
    (["launch", "--num-processes", "2", "--", "train", "--process-id", "1"],
     "vaelab launch sets --process-id itself; leave it out"),
    (["launch", "--num-processes", "2", "--", "train", "--coordinator=127.0.0.1:5"],
     "vaelab launch sets --coordinator itself; leave it out"),
    (["launch", "--num-processes", "2", "--", "train", "--epochs", "0"],
     "epochs must be a positive integer, received 0"),
])
def test_refusals_are_one_line_and_start_nothing(argv, message, capsys, tmp_path,
                                                 monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"vaelab: error: {message}"  # no "PIDs" line: nothing started
    assert list(tmp_path.iterdir()) == []


def test_a_bad_train_option_is_the_parser_line(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["launch", "--num-processes", "2", "--", "train", "--epochs", "x"])
    assert exit_.value.code == 2
    assert "argument --epochs: expected an integer, received 'x'" in capsys.readouterr().err


def test_failure_lines(tmp_path):
    log = tmp_path / "process-1.log"
    log.write_text("[Gloo] Rank 1 is connected\nvaelab: error: something precise\n\n")
    assert launch._failure(1, 2, log) == ("process 1 exited with status 2: vaelab: error: "
                                          "something precise")
    assert launch._failure(1, -9, log) == "process 1 was killed by SIGKILL"
    assert launch._failure(0, 2, log) == "process 0 exited with status 2"  # already shown


def test_commands_refuse_directly():
    with pytest.raises(UsageError, match="received nothing"):
        launch.commands(2, [], 1)


@pytest.mark.parametrize("cores, memory_gib, argv, message", [
    (2, 64, ["--num-processes", "3"],
     "--num-processes 3 is more than the 2 cores this machine gives vaelab; a job of at most 2 "
     "processes fits"),
    (64, 8, ["--num-processes", "12"],
     "--num-processes 12 needs about 9.4 GiB (each process holds JAX and the model), more than "
     "this machine's 8.0 GiB"),
    (2, 64, ["--num-processes", "99999999999"],  # once listed a command line per process
     "--num-processes 99999999999 is more than the 2 cores"),
    (2, 64, ["--num-processes", "2", "--grace", "-1"],
     "--grace must be a number of seconds from 0 to 86400, received -1.0"),
    (2, 64, ["--num-processes", "2", "--grace", "nan"],
     "--grace must be a number of seconds from 0 to 86400, received nan"),
    (2, 64, ["--num-processes", "2", "--grace", "1e300"],
     "--grace must be a number of seconds from 0 to 86400, received 1e+300"),
])
def test_sizes_this_machine_cannot_run_are_refused_before_anything_starts(
        cores, memory_gib, argv, message, capsys, tmp_path, monkeypatch):
    """Checked against the machine (made small here) before a process or file exists; the
    train options are not even looked at."""
    monkeypatch.setattr(machine, "usable_cores", lambda: cores)
    monkeypatch.setattr(machine, "memory_bytes", lambda: memory_gib * 2**30)
    started = []
    monkeypatch.setattr(launch.subprocess, "Popen", lambda *a, **k: started.append(a))
    monkeypatch.chdir(tmp_path)
    assert cli.main(["launch", *argv, "--", "train", "--epochs", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"vaelab: error: {message}"), err
    assert started == [] and list(tmp_path.iterdir()) == []
