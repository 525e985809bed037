"""Resume after SIGKILL, determinism and NaN handling of `vaelab train`."""

import signal
import subprocess
import sys

import numpy as np
import pytest
from conftest import make_idx_dir, saved_weights, self_signal_script

from vaelab import cli
from vaelab.store import runs
SMALL = dict(epochs=4, batch_size=16, hidden_dim=16, latent_dim=3, anneal="2:2", seed=5,
             train_size=192, test_size=48)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    make_idx_dir(folder, n_train=192, n_test=48)
    return folder


KILLER = self_signal_script("SIGKILL")  # dies mid-epoch 3: no cleanup runs


def cli_args(data_dir, out):
    args = ["train", "--quiet", "--data-dir", str(data_dir), "--out", str(out)]
    for key, value in SMALL.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    return args


def test_sigkill_mid_epoch_then_resume_equals_uninterrupted(tmp_path, data_dir):
    killed = tmp_path / "killed"
    done = subprocess.run([sys.executable, "-c", KILLER, *cli_args(data_dir, killed)],
                          capture_output=True, text=True)
    assert done.returncode == -signal.SIGKILL, done.stderr
    state = runs.read_json(killed / "checkpoint" / "state.json")
    assert state["epochs_done"] == 2 and not (killed / "metrics.json").exists()

    assert cli.main(["train", "--resume", str(killed), "--quiet"]) == 0
    straight = tmp_path / "straight"
    assert cli.main(cli_args(data_dir, straight)) == 0

    for a, b in zip(saved_weights(killed), saved_weights(straight), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
    resumed, uninterrupted = (runs.read_history_csv(d / "history.csv") for d in (killed, straight))
    np.testing.assert_array_equal(resumed["epoch"], [1, 2, 3, 4])
    np.testing.assert_array_equal(resumed["kl_weight"], [0, 0, 0.5, 1.0])
    for key in uninterrupted:
        np.testing.assert_allclose(resumed[key], uninterrupted[key], rtol=1e-5, atol=1e-7)
    assert runs.read_json(killed / "metrics.json")["resumed_at_epoch"] == 3
    assert not (killed / "checkpoint").exists()


def test_sigkill_then_resume_of_an_iwae_run_with_burdas_schedule(tmp_path, data_dir):
    """The IWAE loss draws its K samples from the sampling layer's generator, and the
    learning rate follows the epoch: both come back exactly after a SIGKILL."""
    extra = ["--objective", "iwae:3", "--likelihood", "bernoulli", "--lr-schedule", "burda",
             "--adam-epsilon", "1e-4"]
    small = [a for a in cli_args(data_dir, tmp_path / "x") if a not in ("--anneal", "2:2")]

    def args(out):
        return [*small[:small.index("--out")], "--out", str(out),
                *small[small.index("--out") + 2:], *extra]

    killed, straight = kill_resume_and_compare(tmp_path, args)
    uninterrupted = runs.read_history_csv(straight / "history.csv")
    assert {"iwae_bound", "importance_gain", "learning_rate"} <= set(uninterrupted)


def kill_resume_and_compare(tmp_path, args):
    """A run of ``args(out)`` killed mid-epoch 3, resumed, then the same run uninterrupted:
    the same weights and history. Returns both folders."""
    killed, straight = tmp_path / "killed", tmp_path / "straight"
    done = subprocess.run([sys.executable, "-c", KILLER, *args(killed)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert cli.main(["train", "--resume", str(killed), "--quiet"]) == 0
    assert cli.main(args(straight)) == 0
    for a, b in zip(saved_weights(killed), saved_weights(straight), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
    resumed, uninterrupted = (runs.read_history_csv(d / "history.csv") for d in (killed, straight))
    for key in uninterrupted:
        np.testing.assert_allclose(resumed[key], uninterrupted[key], rtol=1e-5, atol=1e-7)
    return killed, straight


@pytest.mark.parametrize("extra", [
    ["--latent-dim", "3,2", "--hidden", "16/8"],
    ["--prior", "vamp:4", "--posterior", "iaf:2", "--likelihood", "bernoulli"]])
def test_sigkill_then_resume_of_richer_latent_models(tmp_path, data_dir, extra):
    """Two stochastic layers draw their noise from one generator; a flow and pseudo-inputs
    are weights: all come back exactly after a SIGKILL."""
    small = [a for a in cli_args(data_dir, tmp_path / "x")]
    small = [a for i, a in enumerate(small)
             if not (a in ("--hidden-dim", "--latent-dim")
                     or (i and small[i - 1] in ("--hidden-dim", "--latent-dim")))]

    def args(out):
        return [*small[:small.index("--out")], "--out", str(out),
                *small[small.index("--out") + 2:], *extra]

    killed, straight = kill_resume_and_compare(tmp_path, args)
    metrics, expected = (runs.read_json(d / "metrics.json") for d in (killed, straight))
    assert metrics["resumed_at_epoch"] == 3
    for key in ("test_mse", "test_kl", "active_units", "output_std", "layers"):
        assert metrics.get(key) == expected.get(key), key


def test_resume_refusals(tmp_path, data_dir, capsys):
    assert cli.main(["train", "--resume", str(tmp_path), "--quiet"]) == 2
    assert "is not a vaelab run folder (no config.json)" in capsys.readouterr().err
    run = tmp_path / "run"
    assert cli.main(cli_args(data_dir, run)) == 0
    assert cli.main(["train", "--resume", str(run), "--quiet"]) == 2
    assert "the run is already complete" in capsys.readouterr().err
    (run / "metrics.json").unlink()
    assert cli.main(["train", "--resume", str(run), "--epochs", "9", "--quiet"]) == 2
    assert "epochs=9 differs from the run's 4" in capsys.readouterr().err


def test_same_command_twice_gives_identical_results(tmp_path, data_dir):
    for name in ("a", "b"):
        assert cli.main(cli_args(data_dir, tmp_path / name)) == 0
    assert (tmp_path / "a" / "history.csv").read_text() == (tmp_path / "b" / "history.csv").read_text()
    a, b = (runs.read_json(tmp_path / n / "metrics.json") for n in ("a", "b"))
    a.pop("train_seconds"), b.pop("train_seconds")
    assert a == b


def test_non_finite_loss_stops_with_exit_3(tmp_path, data_dir, capsys):
    out = tmp_path / "nan"
    args = cli_args(data_dir, out) + ["--learning-rate", "1e30"]
    assert cli.main(args) == 3
    err = capsys.readouterr().err
    assert err.startswith("vaelab: error: non-finite loss at epoch ") and ", batch " in err
    assert err.count("\n") == 1
    assert not (out / "metrics.json").exists() and (out / "config.json").exists()
