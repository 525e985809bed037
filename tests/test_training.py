import dataclasses
import functools
import json
import struct
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import make_idx_dir

from vaelab.core.config import TrainConfig, UsageError
from vaelab.store import runs
from vaelab.training.trainer import train

TINY = dict(epochs=2, batch_size=32, hidden_dim=16, latent_dim=4)
HISTORY_COLUMNS = ["epoch", "loss", "reconstruction_loss", "kl_loss", "kl_weight", "active_units",
                   "heldout_kl", "val_kl_loss", "val_loss", "val_reconstruction_loss"]
METRICS_KEYS = {"test_mse", "test_kl", "active_units", "output_std", "collapsed", "epochs",
                "train_seconds", "complete"}
FIGURES = {"reconstructions.png": (960, 240), "samples.png": (720, 400),
           "latent.png": (500, 420), "curves.png": (900, 340)}


def png_size(path):
    raw = path.read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n", f"{path.name} is not a PNG"
    return struct.unpack(">II", raw[16:24])


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    make_idx_dir(root / "data", n_train=256, n_test=64)
    config = TrainConfig(**TINY, anneal="1:1", data_dir=str(root / "data"))
    metrics = train(config, root / "run", verbose=False)
    return root / "run", metrics, config


def test_run_folder_has_every_file(tiny_run):
    run_dir, metrics, config = tiny_run
    names = {p.name for p in run_dir.iterdir()}
    assert names == {"config.json", "history.csv", "model.keras", "metrics.json",
                     "lab_image.npz", "explorer.html", ".vaelab.lock", *FIGURES}
    for name, size in FIGURES.items():
        assert png_size(run_dir / name) == size
    saved = runs.read_json(run_dir / "config.json")
    assert saved["epochs"] == 2 and saved["anneal"] == "1:1"
    assert saved["kl_scale"] == pytest.approx(1 / 784)
    assert saved["environment"]["backend"] == "jax" and "keras" in saved["environment"]
    assert TrainConfig.from_dict(saved) == config.for_data(784)
    assert saved["data"]["content"] and saved["data"]["path"] == str(Path(config.data_dir).absolute())
    assert saved["fit"] == {"steps_per_execution": 1, "validation_batch_size": 992}


def test_history_and_metrics_content(tiny_run):
    run_dir, metrics, _ = tiny_run
    header = (run_dir / "history.csv").read_text().splitlines()[0].split(",")
    assert header == HISTORY_COLUMNS
    history = runs.read_history_csv(run_dir / "history.csv")
    np.testing.assert_array_equal(history["epoch"], [1, 2])
    np.testing.assert_array_equal(history["kl_weight"], [0.0, 1.0])
    assert history["kl_loss"][0] == 0.0 and history["kl_loss"][1] > 0
    assert set(metrics) == METRICS_KEYS
    assert json.loads((run_dir / "metrics.json").read_text()) == metrics
    assert metrics["complete"] is True and metrics["epochs"] == 2
    assert 0 <= metrics["active_units"] <= 4 and metrics["test_mse"] > 0
    # The collapse monitor (last epoch end) and the final evaluation saw the same 64 test
    # images (held-out size 1000 covers them): the same units, the same KL. Measured: 4 units
    # (smallest encoder-mean variance 0.055, 5.5x the threshold), KL 8.0748 nats.
    assert metrics["active_units"] == history["active_units"][-1] == 4
    assert metrics["test_kl"] == pytest.approx(history["heldout_kl"][-1], rel=1e-6)
    assert history["val_kl_loss"][-1] == pytest.approx(metrics["test_kl"] / 784, rel=1e-5)
    assert metrics["collapsed"] == (metrics["active_units"] == 0 or metrics["output_std"] < 0.01)
    image = runs.read_npz(run_dir / "lab_image.npz")
    assert image["original"].shape == image["reconstruction"].shape == (784,)
    assert image["reconstruction"].min() >= 0 and image["reconstruction"].max() <= 1


def test_metrics_match_the_saved_model(tiny_run):
    """metrics.json is recomputable from model.keras and the data it names."""
    import keras

    from vaelab.analysis import metrics as m
    from vaelab.core.models import VAE
    from vaelab.data import load_idx_dir, to_vectors

    run_dir, metrics, config = tiny_run
    vae = VAE.from_model(keras.models.load_model(run_dir / "model.keras", safe_mode=True))
    _, (x_test, _) = load_idx_dir(config.data_dir)
    x = to_vectors(x_test)
    means, log_vars = vae.encoder.predict(x, verbose=0)
    recon = np.clip(vae.decoder.predict(means, verbose=0), 0, 1)
    assert metrics["test_mse"] == pytest.approx(float(np.mean((recon - x) ** 2)), rel=1e-5)
    assert metrics["active_units"] == m.active_units(means)
    assert metrics["test_kl"] == pytest.approx(float(m.kl_per_dimension(means, log_vars).sum()),
                                               rel=1e-5)


def test_python_api_rejects_bad_arrays(tmp_path):
    x = np.random.default_rng(0).random((64, 784)).astype(np.float32)
    y = np.zeros(64, np.uint8)
    bad = x.copy()
    bad[3, 5] = np.nan
    with pytest.raises(UsageError, match="x_train contains NaN"):
        train(TrainConfig(**TINY), tmp_path / "a", arrays=((bad, y), (x, y)), verbose=False)
    with pytest.raises(UsageError, match=r"x_test must lie in \[0, 1\], received values in \[0.00583056, 254.999\]"):
        train(TrainConfig(**TINY), tmp_path / "b", arrays=((x, y), (x * 255, y)), verbose=False)
    with pytest.raises(UsageError, match="batch-size 128 is larger than the 64 training images"):
        train(TrainConfig(**{**TINY, "batch_size": 128}), tmp_path / "c", arrays=((x, y), (x, y)),
              verbose=False)
    assert not any(tmp_path.iterdir())


@pytest.mark.mnist
@pytest.mark.slow
@pytest.mark.parametrize("kl_scale,collapsed", [(1 / 784, False), (1.0, True)])
def test_collapse_verdicts_on_mnist(tmp_path, kl_scale, collapsed):
    """The lab's lesson, measured: KL/784 learns, the unscaled KL collapses (2 epochs)."""
    metrics = train(TrainConfig(kl_scale=kl_scale), tmp_path / "run", verbose=False)
    assert metrics["collapsed"] is collapsed
    if collapsed:
        assert metrics["active_units"] == 0 and metrics["output_std"] < 0.01
    else:
        assert metrics["active_units"] >= 5 and metrics["test_mse"] < 0.035


def test_validation_runs_in_large_batches_that_fit_the_training_batch():
    from vaelab.training.fit import validation_batch_size

    assert validation_batch_size(TrainConfig()) == 992  # 31 batches of 32
    assert validation_batch_size(TrainConfig(batch_size=256)) == 768
    assert validation_batch_size(TrainConfig(batch_size=2048)) == 2048
    # The conv model: the largest multiple of its batch up to 64 images (batches up to 64).
    conv = functools.partial(TrainConfig, model="conv", hidden_dim=16)
    assert validation_batch_size(conv()) == 64
    assert validation_batch_size(conv(batch_size=48)) == 48
    assert validation_batch_size(conv(batch_size=64)) == 64
    assert validation_batch_size(conv(batch_size=128)) == 896


def test_steps_per_execution_divides_the_epoch_where_it_can():
    from vaelab.training.fit import steps_per_execution

    def steps(n_images, **settings):
        return steps_per_execution(n_images, TrainConfig(**settings))

    assert steps(60000) == 125          # the lab: 1875 batches of 32 in 15 calls
    assert steps(60000, batch_size=256) == 18  # 234 full batches = 13 × 18, then the short one
    assert steps(60000, batch_size=64) == 93   # 937 is prime: 10 × 93, then 7 more
    assert steps(192, batch_size=16) == 1      # 12 batches: one step per call
    assert steps(60000, distribute=True) == 1


def test_progress_is_one_line_per_epoch_when_not_on_a_terminal(monkeypatch):
    import io
    import sys

    from vaelab.training.fit import progress_mode

    monkeypatch.setattr(sys, "stdout", io.StringIO())  # a log file, not a terminal
    assert progress_mode(False) == 0
    assert progress_mode(True) == 2


def test_mlp_of_any_shape_and_activation(tmp_path):
    """--hidden 48,24 --activation tanh: two hidden layers each way, recorded in config.json,
    trained end to end, its reconstruction loss falling."""
    from vaelab import cli

    make_idx_dir(tmp_path / "data", n_train=256, n_test=64)
    out = tmp_path / "run"
    assert cli.main(["train", "--quiet", "--hidden", "48,24", "--activation", "tanh",
                     "--latent-dim", "3", "--epochs", "3", "--data-dir", str(tmp_path / "data"),
                     "--out", str(out)]) == 0
    saved = runs.read_json(out / "config.json")
    assert saved["hidden_dim"] == [48, 24] and saved["activation"] == "tanh"
    assert TrainConfig.from_dict(saved).hidden == (48, 24)
    vae = runs.load_vae(out)
    widths = [l.units for l in vae.encoder.layers + vae.decoder.layers if hasattr(l, "units")]
    assert widths == [48, 24, 3, 3, 24, 48, 784]
    assert all(l.activation is keras.activations.tanh for l in vae.encoder.layers[1:3])
    history = runs.read_history_csv(out / "history.csv")
    assert history["reconstruction_loss"][-1] < history["reconstruction_loss"][0]


def test_conv_runs_take_short_groups():
    """Conv groups are unrolled (see VAEModel.make_train_function), so they stay short."""
    from vaelab.training.fit import MAX_STEPS_CONV, steps_per_execution

    assert steps_per_execution(60000, TrainConfig(model="conv")) <= MAX_STEPS_CONV == 8
    assert steps_per_execution(60000, TrainConfig()) == 125


def test_a_run_that_fails_before_its_first_checkpoint_does_not_block_the_same_command(
        tmp_path, monkeypatch):
    from vaelab.training import trainer

    make_idx_dir(tmp_path / "data", n_train=64, n_test=16)
    config = TrainConfig(data_dir=str(tmp_path / "data"), epochs=1, hidden_dim=8, latent_dim=2)
    original = trainer.new_vae

    def failing(*args, **kwargs):
        raise RuntimeError("no memory for this model")

    monkeypatch.setattr(trainer, "new_vae", failing)
    with pytest.raises(RuntimeError, match="no memory for this model"):
        train(config, tmp_path / "run", verbose=False)
    assert runs.is_empty_run_dir(tmp_path / "run")  # config.json gone, the lock file only
    monkeypatch.setattr(trainer, "new_vae", original)
    assert train(config, tmp_path / "run", verbose=False)["complete"] is True


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_output_bias_data_starts_the_decoder_at_the_mean_image(likelihood):
    """--output-bias data: the output layer's bias is the logit of the clipped mean pixel
    (Bernoulli) or the mean pixel (Gaussian); every other initial weight is the zero start's."""
    from vaelab.training.trainer import new_vae

    images = np.random.default_rng(3).random((50, 784)).astype(np.float32)
    images[:, :4] = [0.0, 1.0, 0.0005, 0.5]  # clipped, clipped, clipped, logit 0
    config = TrainConfig(hidden_dim=(16, 8), latent_dim=3, likelihood=likelihood)
    zero = new_vae(config, 784)
    data = new_vae(dataclasses.replace(config, output_bias="data"), 784, images)
    mean = images.astype(np.float64).mean(0)
    if likelihood == "bernoulli":
        p = np.clip(mean, 1e-3, 1 - 1e-3)
        expected = np.log(p / (1 - p))
        np.testing.assert_allclose(expected[:4], [-6.9068, 6.9068, -6.9068, 0.0], atol=1e-4)
    else:
        expected = mean
    bias = np.asarray(data.decoder.layers[-1].bias)
    np.testing.assert_allclose(bias, expected, rtol=1e-6, atol=1e-6)
    assert not np.allclose(np.asarray(zero.decoder.layers[-1].bias), bias)
    rest = lambda vae: [np.asarray(w) for w in vae.model.weights if w is not  # noqa: E731
                        vae.decoder.layers[-1].bias]
    for a, b in zip(rest(zero), rest(data), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="--output-bias data needs the training images"):
        new_vae(dataclasses.replace(config, output_bias="data"), 784)
