"""Ctrl-C (SIGINT) and SIGTERM stop `vaelab train` at the next step, keep the last
checkpoint, leave no temporary file, and `--resume` then finishes the run exactly."""

import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import finish, make_idx_dir, self_signal_script, start_vaelab

from vaelab import cli
from vaelab.store import runs
SMALL = dict(epochs=4, batch_size=16, hidden_dim=16, latent_dim=3, anneal="2:2", seed=5,
             train_size=192, test_size=48)
LONG = dict(epochs=400, batch_size=16, hidden_dim=16, latent_dim=3, seed=1)
MESSAGE = re.compile(r"^vaelab: interrupted \(last checkpoint: epoch (\d+)\)$")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    make_idx_dir(folder, n_train=192, n_test=48)
    return folder


def cli_args(data_dir, out, settings):
    args = ["train", "--quiet", "--data-dir", str(data_dir), "--out", str(out)]
    for key, value in settings.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    return args


def temporaries(run_dir):
    return [p for p in run_dir.rglob(".*") if ".tmp" in p.name]


def test_sigint_mid_epoch_keeps_the_checkpoint_and_resume_is_exact(tmp_path, data_dir):
    stopped = tmp_path / "stopped"
    child = subprocess.Popen([sys.executable, "-c", self_signal_script("SIGINT"),
                              *cli_args(data_dir, stopped, SMALL)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    code, _, err = finish(child, timeout=120)
    assert code == 130, err
    assert err.strip().splitlines()[-1] == "vaelab: interrupted (last checkpoint: epoch 2)"
    assert runs.read_json(stopped / "checkpoint" / "state.json")["epochs_done"] == 2
    assert not (stopped / "metrics.json").exists() and temporaries(stopped) == []

    stale = stopped / ".history.x1y2.tmp.csv"  # as a SIGKILL in the middle of a write leaves
    stale.write_bytes(b"half a model")
    assert cli.main(["train", "--resume", str(stopped), "--quiet"]) == 0
    assert temporaries(stopped) == []
    straight = tmp_path / "straight"
    assert cli.main(cli_args(data_dir, straight, SMALL)) == 0
    resumed, uninterrupted = (runs.read_history_csv(d / "history.csv") for d in (stopped, straight))
    for key in uninterrupted:
        np.testing.assert_allclose(resumed[key], uninterrupted[key], rtol=1e-5, atol=1e-7)


def wait_for_checkpoint(run_dir, child, timeout=90):
    state = run_dir / "checkpoint" / "state.json"
    deadline = time.monotonic() + timeout
    while not state.exists():
        assert child.poll() is None, child.stderr.read()
        assert time.monotonic() < deadline, "no checkpoint within the time limit"
        time.sleep(0.05)


@pytest.mark.parametrize("signum,status,repeat", [(signal.SIGINT, 130, 1),
                                                   (signal.SIGTERM, 143, 1),
                                                   (signal.SIGINT, 130, 40)])
def test_a_signal_from_outside_stops_training(tmp_path, data_dir, signum, status, repeat):
    """A long run is signalled once its first checkpoint exists (40 SIGINTs 50 ms apart in
    the last case): it stops within seconds, names its checkpoint, and can be resumed."""
    run_dir = tmp_path / "run"
    child = start_vaelab(cli_args(data_dir, run_dir, LONG))
    sent = time.monotonic()
    try:
        wait_for_checkpoint(run_dir, child)
        sent = time.monotonic()
        for _ in range(repeat):
            if child.poll() is not None:
                break
            os.kill(child.pid, signum)
            time.sleep(0.05)
    finally:
        code, _, err = finish(child, timeout=60)
    stopped_after = time.monotonic() - sent
    assert code == status, err
    match = MESSAGE.match(err.strip().splitlines()[-1])
    assert match, err
    assert runs.read_json(run_dir / "checkpoint" / "state.json")["epochs_done"] == int(match[1])
    assert int(match[1]) < LONG["epochs"] and stopped_after < 20
    assert not (run_dir / "metrics.json").exists() and temporaries(run_dir) == []


def test_evaluate_at_a_large_k_stops_within_seconds(tmp_path, data_dir):
    """Importance sampling with a million samples an image runs for many minutes; Ctrl-C
    ends it within seconds with one line, writing no evaluation.json (measured: 0.6 s
    for the lab's model at k = 5000 on the dev machine)."""
    import selectors

    run_dir = tmp_path / "run"
    settings = {k: v for k, v in SMALL.items() if k != "anneal"}
    assert cli.main(cli_args(data_dir, run_dir, dict(settings, epochs=1))) == 0
    child = start_vaelab(["evaluate", run_dir, "--k", "1000000", "--force"])
    sent = time.monotonic()
    try:
        with selectors.DefaultSelector() as watch:  # the line IWAE prints as it starts
            watch.register(child.stdout, selectors.EVENT_READ)
            deadline, line = time.monotonic() + 120, ""
            while "IWAE with k=" not in line and time.monotonic() < deadline:
                if watch.select(timeout=1):
                    line = child.stdout.readline()
        assert "IWAE with k=1000000" in line
        time.sleep(1)
        sent = time.monotonic()
        child.send_signal(signal.SIGINT)
    finally:
        code, _, err = finish(child, timeout=60)
    assert code == 130 and err.strip().splitlines()[-1].endswith("vaelab: interrupted"), err
    assert time.monotonic() - sent < 10
    assert not (run_dir / "evaluation.json").exists() and temporaries(run_dir) == []


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the lost one
def test_a_ctrl_c_whose_exception_was_lost_still_ends_the_command(signal_handlers):
    """The handler raises where the signal lands; inside a finalizer or a garbage-collector
    callback the exception is dropped. The command's next safe point raises it again, and
    so does leaving the command."""
    from conftest import lose_a_ctrl_c

    from vaelab import signals

    signals.check()  # outside a command: nothing to raise
    reached = []
    with pytest.raises(signals.Interrupted) as leaving:
        with signals.handled(command=True):
            lose_a_ctrl_c()
            reached.append("after the lost exception")
            with pytest.raises(signals.Interrupted) as at_a_safe_point:
                signals.check()
            assert at_a_safe_point.value.exit_status == 130
            os.kill(os.getpid(), signal.SIGINT)  # the process is on its way out: ignored
            reached.append("after a second signal")
    assert reached == ["after the lost exception", "after a second signal"]
    assert leaving.value.exit_status == 130
    signals.check()  # the command has ended


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the lost one
def test_the_cli_exits_130_after_a_lost_ctrl_c(signal_handlers, monkeypatch, capsys):
    from conftest import lose_a_ctrl_c

    from vaelab.cli import commands

    written = []

    def command(args):
        lose_a_ctrl_c()
        written.append("result")
        return 0

    monkeypatch.setitem(commands.HANDLERS, "lost", command)
    assert commands._run(type("Args", (), {"func": "lost"})()) == 130
    assert written == ["result"]
    assert capsys.readouterr().err.strip().splitlines()[-1] == "vaelab: interrupted"


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the lost one
def test_a_ctrl_c_lost_before_the_fit_trains_nothing(tmp_path, data_dir, monkeypatch, capsys,
                                                     signal_handlers):
    """Lost while the model is built: the fit does not start, no checkpoint or result is
    written, status 130."""
    from conftest import lose_a_ctrl_c

    from vaelab.training import trainer

    built = []

    def new_vae(*args, **kwargs):
        built.append(1)
        lose_a_ctrl_c()
        return real(*args, **kwargs)

    real = trainer.new_vae
    monkeypatch.setattr(trainer, "new_vae", new_vae)
    run_dir = tmp_path / "run"
    assert cli.main(cli_args(data_dir, run_dir, SMALL)) == 130
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert built and last == "vaelab: interrupted (no checkpoint yet)", last
    assert not (run_dir / "metrics.json").exists() and not (run_dir / "checkpoint").exists()
    assert not (run_dir / "history.csv").exists()
