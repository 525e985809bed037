"""Population training: runs trained together have the histories they have alone."""

import dataclasses
import os
import signal
import subprocess
import sys

import keras
import numpy as np
import pytest
from conftest import make_idx_dir, saved_weights

from vaelab.core.config import NonFiniteLoss, TrainConfig, UsageError
from vaelab.core.models.population import member_logs
from vaelab.store import runs
from vaelab.training import callbacks, checkpoint, interrupts, population, trainer

# 650 images at batch 16: 40 full batches in scanned groups of 4, then a short one of 10.
SMALL = dict(epochs=4, batch_size=16, hidden_dim=16, latent_dim=3, train_size=650, test_size=64)
RTOL = 1e-4  # per epoch, relative: the promise; measured: bit-identical


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    make_idx_dir(folder, n_train=650, n_test=64)
    return folder


def history(run_dir):
    return runs.read_history_csv(run_dir / "history.csv")


def assert_same_run(alone, together, members):
    a, b = history(alone), history(together)
    assert list(a) == list(b)
    for key in a:
        np.testing.assert_allclose(b[key], a[key], rtol=RTOL, atol=1e-7, err_msg=key)
    for w_a, w_b in zip(saved_weights(alone), saved_weights(together), strict=True):
        np.testing.assert_allclose(w_b, w_a, rtol=1e-3, atol=1e-5)
    ma, mb = runs.read_json(alone / "metrics.json"), runs.read_json(together / "metrics.json")
    assert mb.pop("trained_together") == members and "trained_together" not in ma
    for key in ("test_mse", "test_kl", "output_std"):
        assert mb[key] == pytest.approx(ma[key], rel=RTOL, abs=1e-7)
    assert (mb["active_units"], mb["collapsed"]) == (ma["active_units"], ma["collapsed"])


def train_alone_and_together(tmp_path, configs):
    for i, config in enumerate(configs):
        trainer.train(config, tmp_path / f"alone-{i}", verbose=False)
    population.train_many([population.Run(c, tmp_path / f"together-{i}")
                           for i, c in enumerate(configs)], verbose=False,
                          max_members=len(configs))


def test_members_differing_in_seed_scale_schedule_beta_free_bits_train_as_alone(tmp_path,
                                                                                 data_dir):
    base = TrainConfig(data_dir=str(data_dir), **SMALL)
    configs = [dataclasses.replace(base, seed=3, anneal="2:2"),
               dataclasses.replace(base, seed=4, kl_scale=1.0, schedule="cyclical:2:0.5"),
               dataclasses.replace(base, seed=5, beta=0.1, free_bits=0.5)]
    train_alone_and_together(tmp_path, configs)
    for i in range(3):
        assert_same_run(tmp_path / f"alone-{i}", tmp_path / f"together-{i}", 3)
    saved = runs.read_json(tmp_path / "together-1" / "config.json")
    assert saved["fit"]["population"] == {
        "members": 3, "index": 1, "runs": [str(tmp_path / f"together-{i}") for i in range(3)]}
    assert saved["schedule"] == "cyclical:2:0.5" and saved["seed"] == 4
    kl_weights = [list(history(tmp_path / f"together-{i}")["kl_weight"]) for i in range(3)]
    assert kl_weights[0] == [0.0, 0.0, 0.5, 1.0]  # each its own schedule
    assert kl_weights[1] == TrainConfig(**SMALL, schedule="cyclical:2:0.5").kl_weights()
    assert kl_weights[2] == [1.0] * 4


def test_binarized_conditional_iwae_members_train_as_alone(tmp_path, data_dir):
    """Each member binarizes its images with its own seed, shuffles its labels with them and
    draws K importance samples from its own noise."""
    base = TrainConfig(data_dir=str(data_dir), likelihood="bernoulli", conditional=True,
                       objective="iwae:3", lr_schedule="burda", adam_epsilon=1e-4,
                       **{**SMALL, "epochs": 3})
    train_alone_and_together(tmp_path, [dataclasses.replace(base, seed=s) for s in (1, 2)])
    for i in range(2):
        assert_same_run(tmp_path / f"alone-{i}", tmp_path / f"together-{i}", 2)
    assert "iwae_bound" in history(tmp_path / "together-0")
    assert list(history(tmp_path / "together-1")["learning_rate"]) == pytest.approx(
        [1e-3, 1e-3 * 10 ** (-1 / 7), 1e-3 * 10 ** (-1 / 7)])  # Burda et al.: 1 pass, then 3


@pytest.mark.parametrize("latent", [
    dict(latent_dim=(3, 2), hidden_dim=((16,), (8,))),
    dict(prior="vamp:4", posterior="iaf:2", likelihood="bernoulli")])
def test_richer_latent_members_train_as_alone(tmp_path, data_dir, latent):
    """Each member's upper layers, flow or pseudo-inputs and its own noise: a population of
    two-layer models (one with free bits) and of VampPrior-and-IAF models."""
    base = TrainConfig(data_dir=str(data_dir), **{**SMALL, "epochs": 2, **latent})
    extra = {"free_bits": 0.25} if "prior" not in latent else {"anneal": "1:1"}
    configs = [dataclasses.replace(base, seed=1), dataclasses.replace(base, seed=2, **extra)]
    train_alone_and_together(tmp_path, configs)
    for i in range(2):
        assert_same_run(tmp_path / f"alone-{i}", tmp_path / f"together-{i}", 2)
    if "prior" not in latent:
        assert {"kl_loss_1", "kl_loss_2"} <= set(history(tmp_path / "together-1"))


def test_a_member_whose_loss_is_not_finite_stops_alone(tmp_path, data_dir):
    base = TrainConfig(data_dir=str(data_dir), **SMALL)
    good, bad = dataclasses.replace(base, seed=1), dataclasses.replace(base, kl_scale=1e38)
    trainer.train(good, tmp_path / "alone", verbose=False)
    with pytest.raises(NonFiniteLoss) as caught:
        population.train_many([population.Run(good, tmp_path / "good"),
                                population.Run(bad, tmp_path / "bad")], verbose=False,
                               max_members=2)
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'bad'}: non-finite loss at epoch 1, batch 1: ")
    assert "\n" not in message and "no epoch had completed" in message
    assert runs.is_complete(tmp_path / "good") and not runs.is_complete(tmp_path / "bad")
    assert (tmp_path / "bad" / "config.json").exists()
    assert not (tmp_path / "bad" / checkpoint.FOLDER).exists()
    a, b = history(tmp_path / "alone"), history(tmp_path / "good")
    for key in a:
        np.testing.assert_allclose(b[key], a[key], rtol=RTOL, atol=1e-7, err_msg=key)


def signal_in_epoch_3(name: str, then: str) -> str:
    """A ``python -c`` script: vaelab with ``name`` sent to itself once epoch 3 is past its
    4th batch (at a step-group end), running ``then``."""
    return (
        "import os, signal, sys\n"
        "import vaelab\n"
        "from vaelab.training import callbacks\n"
        "original = callbacks.StopOnNonFinite.on_train_batch_end\n"
        "def on_train_batch_end(self, batch, logs=None):\n"
        "    original(self, batch, logs)\n"
        "    if self._epoch == 3 and batch >= 4:\n"
        f"        os.kill(os.getpid(), signal.{name})\n"
        "callbacks.StopOnNonFinite.on_train_batch_end = on_train_batch_end\n" + then)


KILL_IN_EPOCH_3 = signal_in_epoch_3("SIGKILL", """
from vaelab.core.config import TrainConfig
from vaelab.training import population
configs = [TrainConfig(**eval(sys.argv[1]), seed=s) for s in (7, 8)]
population.train_many([population.Run(c, f"{sys.argv[2]}/together-{i}")
                       for i, c in enumerate(configs)], verbose=False, max_members=2)
""")


def test_members_killed_mid_epoch_resume_alone_exactly(tmp_path, data_dir):
    """Each member's checkpoint holds its own Adam state, noise state and history: resumed
    alone after a SIGKILL, it ends as the uninterrupted run alone."""
    settings = dict(SMALL, data_dir=str(data_dir), anneal="1:2")
    child = subprocess.Popen([sys.executable, "-c", KILL_IN_EPOCH_3, repr(settings),
                              str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        _, err = child.communicate(timeout=240)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL, err
    for i, seed in enumerate((7, 8)):
        stopped = tmp_path / f"together-{i}"
        assert checkpoint.read_state(stopped)["epochs_done"] == 2
        trainer.resume(stopped, verbose=False)
        trainer.train(TrainConfig(**settings, seed=seed), tmp_path / f"alone-{i}", verbose=False)
        a, b = history(tmp_path / f"alone-{i}"), history(stopped)
        for key in a:
            np.testing.assert_allclose(b[key], a[key], rtol=RTOL, atol=1e-7, err_msg=key)
        alone = saved_weights(tmp_path / f"alone-{i}")
        for w_a, w_b in zip(alone, saved_weights(stopped), strict=True):
            np.testing.assert_allclose(w_b, w_a, rtol=1e-3, atol=1e-5)


def test_a_signal_during_the_members_epoch_end_leaves_every_checkpoint_at_one_epoch(
        tmp_path, data_dir, monkeypatch):
    """SIGINT arrives while the members' callbacks run at the end of epoch 2 (inside the
    first member's collapse monitor): every member still saves epoch 2, and each, resumed
    alone, ends as its uninterrupted run, whatever its schedule, β or free bits."""
    base = TrainConfig(data_dir=str(data_dir), **SMALL)
    configs = [dataclasses.replace(base, seed=3, anneal="1:2"),
               dataclasses.replace(base, seed=4, kl_scale=1.0, schedule="cyclical:2:0.5"),
               dataclasses.replace(base, seed=5, beta=0.1, free_bits=0.5)]
    original = callbacks.CollapseMonitor.on_epoch_end

    def signal_at_epoch_2(self, epoch, logs=None):
        original(self, epoch, logs)
        if epoch == 1 and self.name == str(tmp_path / "together-0"):
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(callbacks.CollapseMonitor, "on_epoch_end", signal_at_epoch_2)
    with pytest.raises(interrupts.Interrupted) as stopped:
        with interrupts.handled():
            population.train_many([population.Run(c, tmp_path / f"together-{i}")
                                   for i, c in enumerate(configs)], verbose=False,
                                  max_members=3)
    assert stopped.value.checkpoint == "last checkpoint of each run: epoch 2"
    monkeypatch.undo()
    for i, config in enumerate(configs):
        assert checkpoint.read_state(tmp_path / f"together-{i}")["epochs_done"] == 2
        trainer.resume(tmp_path / f"together-{i}", verbose=False)
        trainer.train(config, tmp_path / f"alone-{i}", verbose=False)
        a, b = history(tmp_path / f"alone-{i}"), history(tmp_path / f"together-{i}")
        for key in a:
            np.testing.assert_allclose(b[key], a[key], rtol=RTOL, atol=1e-7, err_msg=key)
        for w_a, w_b in zip(saved_weights(tmp_path / f"alone-{i}"),
                            saved_weights(tmp_path / f"together-{i}"), strict=True):
            np.testing.assert_allclose(w_b, w_a, rtol=1e-3, atol=1e-5)


def test_groups_join_compatible_runs_in_plan_order_up_to_the_limit():
    base = TrainConfig()
    configs = [base, dataclasses.replace(base, epochs=20),                    # 0, 1
               dataclasses.replace(base, seed=1, kl_scale=1.0),               # 2 (with 0)
               dataclasses.replace(base, epochs=20, anneal="4:8", seed=2),    # 3 (with 1)
               dataclasses.replace(base, batch_size=64),                      # 4 alone
               dataclasses.replace(base, distribute=True),                    # 5 alone
               dataclasses.replace(base, seed=3), dataclasses.replace(base, seed=4)]
    assert population.groups(configs) == [[0, 2, 6, 7], [1, 3], [4], [5]]
    assert population.groups(configs, max_members=3) == [[0, 2, 6], [1, 3], [4], [5], [7]]
    assert population._differences(configs, [4]) == "batch_size"
    with pytest.raises(ValueError, match="must share epochs: 2 and 20"):
        population.check_compatible(configs[:2])


def test_folders_are_checked_before_any_run_starts(tmp_path):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    plan = [population.Run(TrainConfig(seed=s), tmp_path / f"s{s}") for s in (0, 1)]
    with pytest.raises(UsageError, match="two runs would write the same folder"):
        population.train_many([*plan, population.Run(TrainConfig(), tmp_path / "x" / ".." / "s0")])
    with pytest.raises(UsageError, match=f"--out {busy} exists and is not empty"):
        population.train_many([*plan, population.Run(TrainConfig(), busy)], max_members=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy"]  # nothing written


def test_one_line_names_the_runs_that_train_alone(tmp_path, data_dir, capsys):
    base = TrainConfig(data_dir=str(data_dir), **{**SMALL, "epochs": 1})
    plan = [population.Run(dataclasses.replace(base, seed=s), tmp_path / f"s{s}") for s in (0, 1)]
    plan.append(population.Run(dataclasses.replace(base, batch_size=32), tmp_path / "b32"))
    values = population.train_many(plan, verbose=True, max_members=2)
    out = capsys.readouterr().out
    assert ("vaelab: 1 of 3 runs train alone (they differ from the others in batch_size); "
            "1 population(s) for the rest") in out
    assert "== 2 runs together, one compiled step:" in out and "loss[1]" in out
    assert [v.get("trained_together") for v in values] == [2, 2, None]


def test_on_a_cpu_runs_train_one_by_one_unless_asked(monkeypatch, capsys, tmp_path):
    """The default follows the device: one by one on a CPU (one line says so), up to 8
    together on an accelerator."""
    trained = []
    monkeypatch.setattr(population.trainer, "train_group",
                        lambda configs, run_dirs, **_: trained.extend(run_dirs) or [{}])
    plan = [population.Run(TrainConfig(seed=s), tmp_path / f"s{s}") for s in (0, 1)]
    assert population.default_max_members() == population.MAX_MEMBERS_CPU == 1  # CI: a CPU
    assert population.train_many(plan) == [{}, {}] and trained == [r.run_dir for r in plan]
    assert ("vaelab: on a CPU the runs train one by one (together they are no faster there); "
            "--together N trains up to N compatible runs as one population") \
        in capsys.readouterr().out
    population.train_many(plan, max_members=1)
    assert "on a CPU" not in capsys.readouterr().out  # asked for: nothing to explain
    with pytest.raises(UsageError, match="--together must be a positive integer, received 0"):
        population.train_many(plan, max_members=0)
    monkeypatch.setattr(keras.distribution, "list_devices", lambda: ["gpu:0"])
    assert population.default_max_members() == population.MAX_MEMBERS == 8


def test_member_logs_take_their_own_names_and_the_shared_ones():
    logs = {"loss": 3.0, "loss[0]": 1.0, "loss[1]": 2.0, "val_loss": 5.0, "val_kl_loss[1]": 0.5,
            "learning_rate": 0.1, "kl_weight[10]": 1.0}
    assert member_logs(logs, 1) == {"loss": 2.0, "val_kl_loss": 0.5, "learning_rate": 0.1}
    assert member_logs(logs, 10) == {"kl_weight": 1.0, "learning_rate": 0.1}


CTRL_C_IN_EPOCH_3 = signal_in_epoch_3("SIGINT", """
from vaelab import cli
sys.exit(cli.main(sys.argv[1:]))
""")


def test_ctrl_c_stops_the_population_and_every_member_resumes(tmp_path):
    """``vaelab lab --quick --together 2``: 02 and 03 train together, then 04 and 05. Ctrl-C in epoch 3
    of the second population keeps each member's epoch-2 checkpoint; each resumes alone."""
    from conftest import finish

    from vaelab import cli

    make_idx_dir(tmp_path / "data", n_train=1024, n_test=512)
    out = tmp_path / "lab"
    child = subprocess.Popen([sys.executable, "-c", CTRL_C_IN_EPOCH_3, "lab", "--quick",
                              "--quiet", "--together", "2", "--data-dir", str(tmp_path / "data"),
                              "--out", str(out)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    code, _, err = finish(child, timeout=240)
    assert code == 130, err
    assert err.strip().splitlines()[-1] == \
        (f"vaelab: interrupted (last checkpoint of each run: epoch 2; "
         f"finish with: vaelab lab --resume {out})")
    for name in ("02-vae", "03-vae-unscaled"):
        assert runs.read_json(out / name / "metrics.json")["trained_together"] == 2
    for name in ("04-anneal", "05-anneal-unscaled"):
        assert checkpoint.read_state(out / name)["epochs_done"] == 2
        assert not runs.is_complete(out / name)
        assert runs.read_json(out / name / "config.json")["fit"]["population"]["members"] == 2
    assert cli.main(["train", "--resume", str(out / "05-anneal-unscaled"), "--quiet"]) == 0
    resumed = history(out / "05-anneal-unscaled")
    assert len(resumed["loss"]) == 5 and list(resumed["kl_weight"]) == [0, 0, 0.5, 1, 1]
    # The rest of the lab (04 from its checkpoint, then the report) with the lab's own command,
    # whose report gives the numbers of the same lab run without a stop.
    assert not (out / "report.md").exists()
    assert cli.main(["lab", "--resume", str(out), "--quiet"]) == 0
    assert runs.is_complete(out / "04-anneal") and runs.read_json(out / "lab.json")["complete"]
    whole = tmp_path / "whole"
    assert cli.main(["lab", "--quick", "--quiet", "--together", "2", "--data-dir",
                     str(tmp_path / "data"), "--out", str(whole)]) == 0
    assert report_numbers(out) == report_numbers(whole)
    assert cli.main(["lab", "--resume", str(out), "--quiet"]) == 2  # complete: one line


def report_numbers(lab_dir):
    """The report's table without the seconds, and the classifier's accuracy."""
    text = (lab_dir / "report.md").read_text()
    table = [row.rsplit("|", 2)[0] for row in text.splitlines() if row.startswith("| `0")]
    accuracy = text.split("reaches **")[1].split("**")[0]
    assert len(table) == 4
    return table, accuracy
