"""Multi-process training on JAX's distributed runtime, run for real on this machine.

Two ``vaelab train`` processes (one CPU device each, Gloo collectives, a coordinator on
127.0.0.1) against one process with two devices and one process with one device; a job
killed with SIGKILL and resumed; a killed peer, with and without ``vaelab launch``.
Every child is bounded in time and killed by its PID at the end.
"""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import make_idx_dir

from vaelab import machine
from vaelab.core.config import UsageError
from vaelab.dist import cluster
from vaelab.store import runs

TIMEOUT = 240  # seconds any child may run
SMALL = ["--hidden", "32", "--latent-dim", "4", "--batch-size", "32", "--quiet"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(args, cwd, log=None, **env):
    """``python -m vaelab ARGS`` in ``cwd``; output to ``log`` (a path) or to pipes."""
    output = open(log, "w") if log else subprocess.PIPE  # noqa: SIM115
    try:
        return subprocess.Popen([sys.executable, "-m", "vaelab", *map(str, args)], cwd=cwd,
                                stdout=output, stderr=subprocess.STDOUT if log else output,
                                text=True, env={**os.environ, "KERAS_BACKEND": "jax", **env})
    finally:
        if log:
            output.close()


def start_job(args, cwds, port=None):
    """One process per folder in ``cwds``, joined at 127.0.0.1:``port``."""
    port = port or free_port()
    n = len(cwds)
    return [start(["train", *args, "--distribute", "--coordinator", f"127.0.0.1:{port}",
                   "--num-processes", n, "--process-id", i], cwd)
            for i, cwd in enumerate(cwds)]


def finish(children, timeout=TIMEOUT):
    """Wait for all, bounded in time; whatever still runs is killed by its PID.

    Returns ``[(status, stdout, stderr), …]``.
    """
    deadline = time.monotonic() + timeout
    results = []
    try:
        for child in children:
            out, err = child.communicate(timeout=max(1.0, deadline - time.monotonic()))
            results.append((child.returncode, out, err))
    finally:
        kill(children)
    return results


def kill(children):
    for child in children:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
            child.wait()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by its parent) is not running
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def wait_for(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def epochs_done(run_dir: Path) -> int:
    try:
        return runs.read_json(run_dir / "checkpoint" / "state.json")["epochs_done"]
    except (OSError, ValueError, KeyError, UsageError):
        return 0


def model_weights(run_dir: Path) -> list[np.ndarray]:
    return [np.asarray(w) for w in keras.models.load_model(run_dir / "model.keras").weights]


two_cores = pytest.mark.skipif(machine.usable_cores() < 2, reason="vaelab launch refuses more "
                               "processes than cores; this machine gives one")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    make_idx_dir(folder, n_train=2048, n_test=128)
    return folder


def test_two_processes_equal_two_devices_and_one_device(tmp_path, data_dir):
    """Same data, seed and global batch 32: 2 processes × 1 device, 1 process × 2 devices
    and 1 device give the same losses per epoch (≤ 1e-5 relative); process 1 writes
    nothing (its working folder stays empty) and ends with process 0's weights."""
    common = [*SMALL, "--epochs", "3", "--train-size", "512", "--data-dir", data_dir,
              "--out", "run"]
    folders = [tmp_path / name for name in ("p0", "p1", "two-devices", "one-device")]
    for folder in folders:
        folder.mkdir()
    results = finish(start_job(common, folders[:2]))
    assert [r[0] for r in results] == [0, 0], results[0][1][-2000:] + results[1][1][-2000:]
    two = start(["train", *common, "--distribute"], folders[2],
                XLA_FLAGS="--xla_force_host_platform_device_count=2")
    one = start(["train", *common], folders[3])
    assert [r[0] for r in finish([two, one])] == [0, 0]

    assert list(folders[1].iterdir()) == []  # process 1 wrote nothing
    runs_ = [folders[0] / "run", folders[2] / "run", folders[3] / "run"]
    assert runs.read_json(runs_[0] / "metrics.json")["complete"] is True
    config = runs.read_json(runs_[0] / "config.json")
    assert config["environment"]["data_parallel_devices"] == 2
    assert config["environment"]["processes"] == 2
    histories = [runs.read_history_csv(run / "history.csv") for run in runs_]
    for key in ("loss", "reconstruction_loss", "kl_loss", "val_loss"):
        for other in histories[1:]:
            np.testing.assert_allclose(histories[0][key], other[key], rtol=1e-5, err_msg=key)
    metrics = [runs.read_json(run / "metrics.json") for run in runs_]
    assert metrics[0]["test_mse"] == pytest.approx(metrics[2]["test_mse"], rel=1e-5)
    assert metrics[0]["active_units"] == metrics[2]["active_units"]

    # process 1 reports the SHA-256 of its final weights: those of process 0's model.keras
    line = [l for l in results[1][1].splitlines() if l.startswith("process 1 of 2:")]
    assert len(line) == 1, results[1][1][-2000:]
    model = keras.models.load_model(runs_[0] / "model.keras")
    assert line[0].endswith(f"weights SHA-256 {cluster.weights_digest(model)}")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, data_dir):
    """A 2-process run of 4 epochs over 2 048 images (64 steps per epoch)."""
    folder = tmp_path_factory.mktemp("uninterrupted")
    args = [*SMALL, "--epochs", "4", "--data-dir", data_dir, "--out", folder / "run"]
    results = finish(start_job(args, [folder, folder]))
    assert [r[0] for r in results] == [0, 0], results[0][2][-2000:]
    return folder / "run", args


@two_cores
def test_killed_job_resumed_ends_with_the_uninterrupted_weights(tmp_path, uninterrupted):
    reference, args = uninterrupted
    run = tmp_path / "run"
    args = [a if a != reference else run for a in args]
    children = start_job(args, [tmp_path, tmp_path])
    try:
        wait_for(lambda: epochs_done(run) >= 1, TIMEOUT, "the first checkpoint")
        time.sleep(0.3)  # into the next epoch
    finally:
        for child in children:  # SIGKILL, all processes
            if child.poll() is None:
                os.kill(child.pid, signal.SIGKILL)
        finish(children, timeout=30)
    assert not (run / "metrics.json").exists()
    done = epochs_done(run)
    assert 1 <= done < 4

    launched = subprocess.run([sys.executable, "-m", "vaelab", "launch", "--num-processes", "2",
                               "--", "train", "--resume", run, "--quiet"],
                              capture_output=True, text=True, timeout=TIMEOUT, cwd=tmp_path)
    assert launched.returncode == 0, launched.stderr[-3000:]
    assert runs.read_json(run / "metrics.json")["resumed_at_epoch"] == done + 1
    for a, b in zip(model_weights(run), model_weights(reference), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(runs.read_history_csv(run / "history.csv")["loss"],
                               runs.read_history_csv(reference / "history.csv")["loss"],
                               rtol=1e-6)


def test_a_killed_process_stops_the_other(tmp_path, data_dir):
    """Without a launcher: process 1 is killed mid-run; process 0 stops within 30 s with
    one line (its all-reduce fails), exit status 1, and keeps its last checkpoint."""
    run = tmp_path / "run"
    children = start_job([*SMALL, "--epochs", "50", "--data-dir", data_dir, "--out", run],
                         [tmp_path, tmp_path])
    try:
        wait_for(lambda: epochs_done(run) >= 1, TIMEOUT, "the first checkpoint")
        os.kill(children[1].pid, signal.SIGKILL)
        killed_at = time.monotonic()
        status, _, err = finish(children[:1], timeout=30)[0]
        assert time.monotonic() - killed_at < 30
    finally:
        kill(children)
    assert status == 1
    last = err.strip().splitlines()[-1]
    assert last.startswith("vaelab: error: process 0 of 2 lost contact with the others ("), err
    assert "last checkpoint: epoch" in last
    assert not any(alive(c.pid) for c in children)


@two_cores
def test_launcher_stops_the_job_when_a_process_is_killed(tmp_path, data_dir):
    run, log = tmp_path / "run", tmp_path / "launch.log"
    launcher = start(["launch", "--num-processes", "2", "--", "train", *SMALL, "--epochs", "50",
                      "--data-dir", data_dir, "--out", run], tmp_path, log=log)
    pids = []
    try:
        wait_for(lambda: "PIDs" in log.read_text(), 60, "the launcher's first line")
        first = log.read_text().splitlines()[0]
        pids = [int(p) for p in first.split("PIDs ")[1].split(", coordinator")[0].split(", ")]
        assert len(pids) == 2
        assert ", coordinator 127.0.0.1:" in first
        wait_for(lambda: epochs_done(run) >= 1, TIMEOUT, "the first checkpoint")
        os.kill(pids[1], signal.SIGKILL)
        status = launcher.wait(timeout=30)
    finally:
        kill([launcher])
        for pid in pids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
    assert status == 128 + signal.SIGKILL
    assert ("vaelab launch: process 1 was killed by SIGKILL; the others were stopped"
            in log.read_text().splitlines()[-1])
    assert not any(alive(pid) for pid in pids)
    assert epochs_done(run) >= 1 and not (run / "metrics.json").exists()
