"""Anything a user can type or leave on disk gives one line and exit 2, and writes nothing."""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from conftest import make_idx_dir, write_idx

from vaelab import cli
from vaelab.core.config import TrainConfig, UsageError
from vaelab.store import runs
from vaelab.training.trainer import train

TINY = ["--epochs", "1", "--hidden-dim", "8", "--latent-dim", "2", "--batch-size", "16",
        "--quiet"]


def one_line(capsys, expected: str | None = None) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("vaelab"), err
    assert "Traceback" not in err
    if expected is not None:
        assert expected in err, err
    return err


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    make_idx_dir(folder, n_train=64, n_test=32)
    return folder


@pytest.fixture(scope="module")
def finished(tmp_path_factory, data_dir):
    run = tmp_path_factory.mktemp("finished") / "run"
    train(TrainConfig(epochs=1, hidden_dim=8, latent_dim=2, batch_size=16,
                      data_dir=str(data_dir)), run, verbose=False)
    return run


def copy_run(finished, tmp_path):
    target = tmp_path / "copy"
    target.mkdir()
    for path in finished.iterdir():
        if path.is_file() and path.name != runs.LOCK:
            (target / path.name).write_bytes(path.read_bytes())
    return target


# ---------------------------------------------------------------- options


@pytest.mark.parametrize("option,value,message", [
    ("--kl-scale", "1e400", "--kl-scale must be a positive number or fraction such as 1/784, "
                            "received '1e400'"),
    ("--seed", "4294967296", "seed must be a non-negative integer, at most 4294967295 "
                             "(2**32 - 1), received 4294967296"),
    ("--hidden-dim", "1000000000", "hidden-dim 1000000000 and latent-dim 2 need about"),
    ("--latent-dim", "1000000000", "hidden-dim 8 and latent-dim 1000000000 need about"),
    ("--beta", "0", "--beta must be a positive finite number (1: the plain KL), received 0.0"),
    ("--beta", "nan", "--beta must be a positive finite number (1: the plain KL), received nan"),
    ("--beta", "-2", "--beta must be a positive finite number (1: the plain KL), received -2.0"),
    ("--beta", "x", "argument --beta: expected a number, received 'x'"),
    ("--free-bits", "-1", "--free-bits must be a non-negative finite number of nats (0: off), "
                          "received -1.0"),
    ("--free-bits", "inf", "--free-bits must be a non-negative finite number of nats (0: off), "
                           "received inf"),
    ("--objective", "iwae:100000000", "objective iwae:100000000 on batches of 32 images (the "
                                      "largest, training or validation) needs about"),
    ("--objective", "iwae:0", "--objective must be elbo or iwae:K with K a positive integer, "
                              "received 'iwae:0'"),
    ("--objective", "iwae:x", "received 'iwae:x'"),
    ("--objective", "vae", "received 'vae'"),
    ("--out", "", "argument --out: expected a path, received ''"),
    ("--data-dir", "", "argument --data-dir: expected a path, received ''"),
    ("--resume", "", "argument --resume: expected a path, received ''"),
    ("--train-size", "65", "--train-size 65 is more than the 64 training images of "),
    ("--test-size", "33", "--test-size 33 is more than the 32 test images of "),
    ("--train-size", "99999999999", "--train-size 99999999999 is more than the 64 training "),
    ("--epochs", "100001", "epochs must be at most 100000, received 100001"),
    ("--epochs", "99999999999", "epochs must be at most 100000, received 99999999999"),
])
def test_option_values(tmp_path, data_dir, capsys, option, value, message):
    refused(capsys, tmp_path, TINY, data_dir, [option, value], message)


def refused(capsys, tmp_path, base, data_dir, extra, message) -> None:
    """``train`` with ``extra`` exits 2 with one line holding ``message``, writing nothing."""
    out = tmp_path / "out"
    args = ["train", *base, "--data-dir", str(data_dir), "--out", str(out), *extra]
    try:
        status = cli.main(args)
    except SystemExit as exc:  # argparse's own errors
        status = exc.code
    assert status == 2
    one_line(capsys, message)
    assert not out.exists()


def test_an_mlp_deeper_than_the_bound(tmp_path, capsys):
    """900 hidden layers once ended in a RecursionError traceback inside Keras."""
    out = tmp_path / "out"
    assert cli.main(["train", "--hidden", ",".join(["8"] * 257), "--out", str(out)]) == 2
    one_line(capsys, "--hidden takes at most 256 widths (hidden layers) per group, received 257")
    assert not out.exists()


@pytest.mark.parametrize("extra, message", [
    (["--objective", "iwae:5", "--free-bits", "0.5"],
     "--objective iwae:5 cannot be combined with --free-bits"),
    (["--objective", "iwae:5", "--anneal", "1:2"],
     "--objective iwae:5 cannot be combined with --anneal or --schedule"),
    (["--objective", "iwae:5", "--beta", "2"], "--objective iwae:5 needs --beta 1"),
])
def test_objective_combinations_without_a_meaning(tmp_path, data_dir, capsys, extra, message):
    out = tmp_path / "out"
    assert cli.main(["train", *TINY, "--data-dir", str(data_dir), "--out", str(out),
                     *extra]) == 2
    one_line(capsys, message)
    assert not out.exists()


@pytest.mark.parametrize("extra, message", [
    (["--prior", "vamp:0"], "--prior must be standard or vamp:N with N an integer from 1 to "
                            "10000, received 'vamp:0'"),
    (["--prior", "vamp:-3"], "received 'vamp:-3'"),
    (["--prior", "vamp:2.5"], "received 'vamp:2.5'"),
    (["--prior", "vamp:07"], "received 'vamp:07'"),
    (["--prior", "vamp:10001"], "received 'vamp:10001'"),
    (["--prior", "mixture:3"], "received 'mixture:3'"),
    (["--posterior", "iaf:0"], "--posterior must be gaussian, iaf:N or iaf:N:context with N an "
                               "integer from 1 to 64, received 'iaf:0'"),
    (["--posterior", "iaf:x"], "received 'iaf:x'"),
    (["--posterior", "iaf:0:context"], "received 'iaf:0:context'"),
    (["--posterior", "iaf:2:ctx"], "received 'iaf:2:ctx'"),
    (["--posterior", "gaussian:context"], "received 'gaussian:context'"),
    (["--latent-dim", "4,0", "--hidden", "8/8"], "--latent-dim widths must be a positive "
                                                 "integer, received 0"),
    (["--latent-dim", "4,-2", "--hidden", "8/8"], "received -2"),
    (["--latent-dim", "4,2.5"], "--latent-dim: expected a positive integer, or one per "
                                "stochastic layer separated by commas"),
    (["--latent-dim", "4,2", "--hidden", "8"], "--hidden 8 has 1 group(s) of widths for the 2 "
                                               "stochastic layer(s) of --latent-dim 4,2"),
    (["--latent-dim", "4", "--hidden", "8/8"], "--hidden 8/8 has 2 group(s) of widths for the "
                                               "1 stochastic layer(s) of --latent-dim 4"),
    (["--hidden", "8//8"], "--hidden: expected positive integer widths"),
    (["--latent-dim", "4,2", "--hidden", "8/8", "--prior", "vamp:3"],
     "--prior vamp:3 has no defined meaning with 2 stochastic layers"),
    (["--latent-dim", "4,2", "--hidden", "8/8", "--posterior", "iaf:2"],
     "--posterior iaf:2 has no defined meaning with 2 stochastic layers"),
    (["--prior", "vamp:3", "--conditional"], "--prior vamp:3 cannot be combined with "
                                             "--conditional"),
    (["--prior", "vamp:3", "--free-bits", "0.5"], "--prior vamp:3 cannot be combined with "
                                                  "--free-bits"),
    (["--posterior", "iaf:1", "--free-bits", "0.5"], "--posterior iaf:1 cannot be combined "
                                                     "with --free-bits"),
    (["--free-bits", "0.5,0.25"], "--free-bits 0.5,0.25 gives 2 value(s) for the 1 stochastic "
                                  "layer(s) of --latent-dim 2; give one λ for every layer, or "
                                  "one per layer"),
    (["--latent-dim", "4,2", "--hidden", "8/8", "--free-bits", "0.5,-1"],
     "--free-bits must be a non-negative finite number of nats (0: off), received -1.0"),
    (["--free-bits", "0.5,x"], "--free-bits: expected a number, or one per stochastic layer"),
    (["--output-bias", "data", "--model", "conv"], "--output-bias data needs --model mlp: the "
                                                   "conv decoder's output layer has one bias "
                                                   "for all pixels, not one per pixel"),
])
def test_latent_models_that_do_not_fit(tmp_path, data_dir, capsys, extra, message):
    """Layer lists that do not fit, counts out of range, combinations without a meaning."""
    base = [a for a in TINY if a not in ("--hidden-dim", "8")] if "--hidden" in extra else TINY
    refused(capsys, tmp_path, base, data_dir, extra, message)


def test_a_steep_sigmoid_schedule_trains(tmp_path, data_dir):
    """exp(900) would overflow at epoch 1; the schedule is computed without it."""
    assert cli.main(["train", *TINY, "--epochs", "2", "--schedule", "sigmoid:10:100",
                     "--data-dir", str(data_dir), "--out", str(tmp_path / "run")]) == 0
    history = runs.read_history_csv(tmp_path / "run" / "history.csv")
    np.testing.assert_array_equal(history["kl_weight"], [0.0, 0.0])


def test_warnings_for_a_zero_weight_run_and_a_small_test_set(tmp_path, data_dir, capsys):
    assert cli.main(["train", *TINY[:-1], "--epochs", "3", "--schedule", "cyclical:4:0.5",
                     "--test-size", "10", "--data-dir", str(data_dir),
                     "--out", str(tmp_path / "run")]) == 0
    err = capsys.readouterr().err
    assert ("warning: the KL weight is 0 in every one of the 3 epoch(s) (cyclical:4:0.5): "
            "the KL term is never trained") in err
    assert "warning: the collapse verdict uses only 10 test images" in err


def test_a_vamp_prior_without_warm_up_is_warned_about(tmp_path, data_dir, capsys):
    assert cli.main(["train", *TINY[:-1], "--prior", "vamp:3", "--data-dir", str(data_dir),
                     "--out", str(tmp_path / "run")]) == 0
    assert ("warning: --prior vamp:3 without a KL warm-up (--anneal, --schedule) and with a "
            "zero output bias") in capsys.readouterr().err
    assert cli.main(["train", *TINY[:-1], "--prior", "vamp:3", "--anneal", "1:2", "--data-dir",
                     str(data_dir), "--out", str(tmp_path / "warm")]) == 0
    assert "warm-up" not in capsys.readouterr().err
    assert cli.main(["train", *TINY[:-1], "--prior", "vamp:3", "--output-bias", "data",
                     "--data-dir", str(data_dir), "--out", str(tmp_path / "bias")]) == 0
    assert "warm-up" not in capsys.readouterr().err


def test_one_test_image_is_refused(tmp_path, data_dir, capsys):
    assert cli.main(["train", *TINY, "--test-size", "1", "--data-dir", str(data_dir),
                     "--out", str(tmp_path / "run")]) == 2
    one_line(capsys, "need at least 2 test images for the collapse verdict")


# ---------------------------------------------------------------- data


def idx_folder(folder, train_shape, test_shape, labels=None):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    write_idx(folder / "train-images-idx3-ubyte", rng.integers(0, 256, train_shape))
    write_idx(folder / "t10k-images-idx3-ubyte", rng.integers(0, 256, test_shape))
    write_idx(folder / "train-labels-idx1-ubyte", rng.integers(0, 10, train_shape[0]))
    write_idx(folder / "t10k-labels-idx1-ubyte",
              labels if labels is not None else rng.integers(0, 10, test_shape[0]))
    return folder


@pytest.mark.parametrize("train_shape,test_shape,message", [
    ((64, 20, 30), (16, 20, 30), "images must be square for the figures and the explorer, "
                                 "these are 20x30"),
    ((0, 28, 28), (16, 28, 28), "there are no train images"),
    ((64, 28, 28), (0, 28, 28), "there are no test images"),
    ((64, 0, 0), (16, 0, 0), "the images have no pixels"),
])
def test_unusable_image_folders(tmp_path, capsys, train_shape, test_shape, message):
    folder = idx_folder(tmp_path / "data", train_shape, test_shape)
    out = tmp_path / "run"
    assert cli.main(["train", *TINY, "--data-dir", str(folder), "--out", str(out)]) == 2
    one_line(capsys, message)
    assert not out.exists()


def test_labels_shorter_than_images_in_python(tmp_path):
    x = np.zeros((40, 28, 28), np.uint8)
    with pytest.raises(UsageError, match=r"train labels must be one per image: 40 images, "
                                         r"labels of shape \(39,\)"):
        train(TrainConfig(epochs=1), tmp_path / "run", verbose=False,
              arrays=((x, np.zeros(39)), (x[:8], np.zeros(8))))
    assert not (tmp_path / "run").exists()


def test_raw_and_gz_files_that_differ_are_refused(tmp_path, capsys):
    folder = tmp_path / "data"
    make_idx_dir(folder, n_train=32, n_test=16)
    make_idx_dir(tmp_path / "other", n_train=32, n_test=16, seed=9, gz=True)
    os.replace(tmp_path / "other" / "t10k-labels-idx1-ubyte.gz",
               folder / "t10k-labels-idx1-ubyte.gz")
    assert cli.main(["data", "info", "--data-dir", str(folder)]) == 2
    one_line(capsys, "t10k-labels-idx1-ubyte and t10k-labels-idx1-ubyte.gz both exist with "
                     "different contents; keep one of them")


def test_a_cache_home_that_is_a_file(tmp_path):
    """XDG_CACHE_HOME pointing at a file: no compilation cache, and MNIST's cache is a
    one-line error (no data folder given, no MNIST available)."""
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    env = {**os.environ, "XDG_CACHE_HOME": str(blocker), "PATH": "/nonexistent"}
    env.pop("VAELAB_DATA_DIR", None)
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    done = subprocess.run([sys.executable, "-m", "vaelab", "data", "fetch"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "cannot create the MNIST cache" in done.stderr


# ---------------------------------------------------------------- run folders


@pytest.mark.parametrize("content", [b"garbage", b"", None])
def test_a_damaged_or_missing_model(tmp_path, finished, capsys, content):
    run = copy_run(finished, tmp_path)
    if content is None:
        (run / "model.keras").unlink()
    else:
        (run / "model.keras").write_bytes(content)
    for command in (["evaluate", str(run), "--k", "2", "--quiet"],
                    ["explore", str(run), "--out", str(tmp_path / "page.html")]):
        assert cli.main(command) == 2
        err = one_line(capsys, f"{run / 'model.keras'}")
        assert "is missing" in err if content is None else "cannot be read as a Keras model" in err
    assert not (run / "evaluation.json").exists() and not (tmp_path / "page.html").exists()


@pytest.mark.parametrize("name,text,message", [
    ("config.json", "[1, 2, 3]", "config.json is not a JSON object"),
    ("config.json", "null", "config.json is not a JSON object"),
    ("config.json", '{"epochs": 1e400}', "epochs must be a positive integer, received inf"),
    ("metrics.json", "[1, 2, 3]", "is an incomplete run"),
    ("metrics.json", "null", "is an incomplete run"),
])
def test_json_files_that_are_not_what_they_should_be(tmp_path, finished, capsys, name, text,
                                                      message):
    run = copy_run(finished, tmp_path)
    (run / name).write_text(text)
    assert cli.main(["evaluate", str(run), "--k", "2", "--quiet"]) == 2
    one_line(capsys, message)


def interrupted_run(tmp_path, data_dir):
    """A run folder as a killed run leaves it: config and an epoch-1 checkpoint, no metrics."""
    run = tmp_path / "run"
    assert cli.main(["train", *TINY, "--epochs", "2", "--data-dir", str(data_dir),
                     "--out", str(run)]) == 0
    (run / "metrics.json").unlink()
    return run


@pytest.mark.parametrize("state,message", [
    ('{"epochs_done": 1, "model"', "state.json is damaged"),
    ("[1, 2]", "state.json is damaged (not a JSON object)"),
    ('{"epochs_done": 1}', "state.json is damaged ('model' is missing or not a str)"),
    ('{"epochs_done": 1, "model": "../../x.keras", "seed_states": [], "history": {}}',
     "state.json is damaged (epochs_done or model out of range)"),
])
def test_a_damaged_checkpoint_state(tmp_path, data_dir, capsys, state, message):
    run = interrupted_run(tmp_path, data_dir)
    (run / "checkpoint").mkdir(exist_ok=True)
    (run / "checkpoint" / "state.json").write_text(state)
    assert cli.main(["train", "--resume", str(run), "--quiet"]) == 2
    one_line(capsys, message)


def test_a_garbage_checkpoint_model(tmp_path, data_dir, capsys):
    run = interrupted_run(tmp_path, data_dir)
    (run / "checkpoint").mkdir(exist_ok=True)
    (run / "checkpoint" / "epoch-1.keras").write_bytes(b"garbage")
    state = {"epochs_done": 1, "model": "epoch-1.keras", "seed_states": [[0, 0]],
             "history": {"loss": [1.0]}}
    (run / "checkpoint" / "state.json").write_text(json.dumps(state))
    assert cli.main(["train", "--resume", str(run), "--quiet"]) == 2
    one_line(capsys, "epoch-1.keras cannot be read as a Keras model")


def edit_config(run, **changes):
    values = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**values, **changes}))


def folder_state(run):
    return {p.relative_to(run): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()
            and p.name != runs.LOCK}


@pytest.mark.parametrize("changes,difference", [
    ({"activation": "tanh"}, "encoder/encoder_hidden's activation is 'relu' in the saved model, "
                             "'tanh' in config.json"),
    ({"hidden_dim": 9}, "encoder/encoder_hidden's units is 8 in the saved model, 9 in config.json"),
    ({"posterior": "iaf:1"}, "sampling's class_name is 'Sampling' in the saved model, "
                             "'LatentStack' in config.json"),
    ({"likelihood": "bernoulli"}, "the model's likelihood is 'gaussian' in the saved model, "
                                  "'bernoulli' in config.json"),
    ({"seed": 7}, "sampling's seed is 0 in the saved model, 7 in config.json"),
])
def test_a_config_edited_after_the_checkpoint_does_not_steer_a_resume(
        tmp_path, data_dir, capsys, monkeypatch, signal_handlers, changes, difference):
    """The checkpoint decides what is trained, config.json what the folder says it is: when
    they disagree the resume is refused, naming the first difference, and nothing moves."""
    from vaelab.training import callbacks

    original = callbacks.StopOnNonFinite.on_train_batch_end

    def ctrl_c_in_epoch_3(self, batch, logs=None):
        original(self, batch, logs)
        if self._epoch == 3:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(callbacks.StopOnNonFinite, "on_train_batch_end", ctrl_c_in_epoch_3)
    run = tmp_path / "run"
    assert cli.main(["train", *TINY, "--epochs", "4", "--data-dir", str(data_dir),
                     "--out", str(run)]) == 130
    monkeypatch.undo()
    capsys.readouterr()
    edit_config(run, **changes)
    before = folder_state(run)
    assert cli.main(["train", "--resume", str(run), "--quiet"]) == 2
    one_line(capsys, f"{run}/config.json does not describe {run}/checkpoint/epoch-2.keras: "
                     f"{difference}; put back the config.json the run was made with, or train "
                     f"the run again")
    assert folder_state(run) == before


@pytest.mark.parametrize("command", [["evaluate", "--k", "2", "--quiet"], ["sample"], ["explore"]])
def test_a_config_edited_after_training_decides_no_result(tmp_path, finished, capsys, command):
    run = copy_run(finished, tmp_path)
    edit_config(run, latent_dim=3)
    before = folder_state(run)
    assert cli.main([command[0], str(run), *command[1:]]) == 2
    one_line(capsys, f"{run}/config.json does not describe {run}/model.keras: encoder/z_mean's "
                     f"units is 2 in the saved model, 3 in config.json")
    assert folder_state(run) == before


def test_a_config_edited_into_a_model_the_images_cannot_have(tmp_path, capsys):
    """An MLP run on 30 × 30 images whose config.json now says conv (which needs a side
    divisible by 4): one line naming why, no traceback."""
    make_idx_dir(tmp_path / "data", n_train=32, n_test=16, side=30)
    run = tmp_path / "run"
    assert cli.main(["train", *TINY, "--data-dir", str(tmp_path / "data"), "--out",
                     str(run)]) == 0
    capsys.readouterr()
    edit_config(run, model="conv")
    before = folder_state(run)
    assert cli.main(["sample", str(run)]) == 2
    err = one_line(capsys, f"{run}/config.json does not describe {run}/model.keras: ")
    assert "divisible by 4" in err, err
    assert folder_state(run) == before


def test_the_labs_classifier_folder_is_not_a_vae_run(tmp_path, capsys):
    run = tmp_path / "01-classifier"
    run.mkdir()
    runs.write_json(run / "config.json", {"model": "classifier", "epochs": 2})
    runs.write_json(run / "metrics.json", {"test_accuracy": 0.9, "complete": True})
    for command in (["evaluate", str(run), "--quiet"], ["explore", str(run)]):
        assert cli.main(command) == 2
        one_line(capsys, f"{run} is a classifier run, not a VAE run")


def test_evaluation_json_holds_no_bare_nan(tmp_path, finished):
    run = copy_run(finished, tmp_path)
    assert cli.main(["evaluate", str(run), "--k", "2", "--quiet", "--test-size", "1"]) == 0
    text = (run / "evaluation.json").read_text()
    assert "NaN" not in text and json.loads(text)["elbo_se"] is None


@pytest.mark.parametrize("size, message", [
    ("0", "--test-size must be a positive integer, received 0"),  # once: "the run's own"
    ("-1", "--test-size must be a positive integer, received -1"),  # once: all images but one
    ("33", "--test-size 33 is more than the 32 test images of "),
])
def test_evaluate_test_sizes_are_refused_not_reinterpreted(tmp_path, finished, capsys, size,
                                                           message):
    run = copy_run(finished, tmp_path)
    assert cli.main(["evaluate", str(run), "--k", "2", "--quiet", "--test-size", size]) == 2
    one_line(capsys, message)
    assert not (run / "evaluation.json").exists()


def test_evaluate_says_when_it_uses_more_test_images_than_the_run(tmp_path, data_dir, capsys):
    run = tmp_path / "run"
    assert cli.main(["train", *TINY, "--data-dir", str(data_dir), "--test-size", "16",
                     "--out", str(run)]) == 0
    capsys.readouterr()
    assert cli.main(["evaluate", str(run), "--k", "2", "--quiet"]) == 0
    assert capsys.readouterr().err == ""
    assert runs.read_json(run / "evaluation.json")["test_images"] == 16
    assert cli.main(["evaluate", str(run), "--k", "2", "--quiet", "--test-size", "8"]) == 0
    assert capsys.readouterr().err == ""
    assert cli.main(["evaluate", str(run), "--k", "2", "--quiet", "--test-size", "32"]) == 0
    assert capsys.readouterr().err == ("vaelab: evaluating on the first 32 test images; the run "
                                       "itself validated on its first 16\n")
    assert runs.read_json(run / "evaluation.json")["test_images"] == 32


@pytest.mark.parametrize("command", ["lab", "ablate"])
def test_plans_bound_their_seeds(tmp_path, capsys, command):
    """A count of seeds once built a plan of billions of runs before anything was checked."""
    out = tmp_path / "out"
    assert cli.main([command, "--quick", "--seeds", "99999999999", "--out", str(out)]) == 2
    one_line(capsys, "--seeds must be an integer from 1 to 1000, received 99999999999")
    assert not out.exists()


@pytest.mark.parametrize("command", ["lab", "ablate"])
def test_a_quick_plan_on_too_few_images_writes_nothing(tmp_path, data_dir, capsys, command):
    """Once the lab trained its classifier, wrote lab.json, and then its first VAE refused
    a --train-size the user never gave."""
    out = tmp_path / "out"
    assert cli.main([command, "--quick", "--quiet", "--data-dir", str(data_dir),
                     "--out", str(out)]) == 2
    one_line(capsys, f"--quick trains on the first 1024 training and 512 test images; "
                     f"{data_dir} has 64 and 32")
    assert not out.exists()


def test_k_above_the_bound_needs_force(tmp_path, finished, capsys):
    run = copy_run(finished, tmp_path)
    assert cli.main(["evaluate", str(run), "--k", "20000", "--quiet"]) == 2
    one_line(capsys, "--k 20000 is above 5000: about 0 min for 32 test images on a 2-core CPU "
                     "(the lab's model); pass --force to run it")
    assert not (run / "evaluation.json").exists()


# ---------------------------------------------------------------- output paths


def test_explore_output_paths(tmp_path, finished, capsys):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    for out, message in ((tmp_path / "missing" / "page.html", "does not exist"),
                         (tmp_path, "is a folder; name the file to write"),
                         (a_file / "page.html", "is not a folder")):
        assert cli.main(["explore", str(finished), "--out", str(out)]) == 2
        one_line(capsys, message)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_tutorial_output_paths(tmp_path, capsys):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    blocked = tmp_path / "blocked"
    (blocked / "student").parent.mkdir()
    (blocked / "student").write_text("a file where the student folder goes")
    for out, message in ((a_file, "exists and is not a folder"),
                         (a_file / "sub", "exists and is not a folder"),
                         (blocked, "student exists and is not a folder")):
        assert cli.main(["tutorial", "build", "--out", str(out)]) == 2
        one_line(capsys, message)
    assert not (blocked / "solution").exists()
    try:
        cli.main(["tutorial", "build", "--out", ""])
    except SystemExit as exc:
        assert exc.code == 2
    one_line(capsys, "argument --out: expected a path, received ''")


def test_tutorial_keeps_an_edited_student_copy(tmp_path, capsys):
    out = tmp_path / "tutorial"
    assert cli.main(["tutorial", "build", "--out", str(out)]) == 0
    assert cli.main(["tutorial", "build", "--out", str(out)]) == 0  # unchanged: rebuilt
    capsys.readouterr()
    student = out / "student" / "lab11.py"
    student.write_text(student.read_text() + "\n# my answer\n")
    assert cli.main(["tutorial", "build", "--out", str(out)]) == 2
    one_line(capsys, "has been edited; pass --overwrite to replace it")
    assert student.read_text().endswith("# my answer\n")
    assert cli.main(["tutorial", "build", "--out", str(out), "--overwrite"]) == 0
    assert "# my answer" not in student.read_text()


def test_out_that_cannot_be_created(capsys, data_dir):
    assert cli.main(["train", *TINY, "--data-dir", str(data_dir), "--out", "/proc/x"]) == 2
    one_line(capsys, "--out /proc/x cannot be created")


def test_relative_data_dir_is_recorded_absolute(tmp_path, data_dir, monkeypatch):
    monkeypatch.chdir(data_dir.parent)
    assert cli.main(["train", *TINY, "--data-dir", data_dir.name,
                     "--out", str(tmp_path / "run")]) == 0
    assert runs.read_json(tmp_path / "run" / "config.json")["data_dir"] == str(data_dir)
