import keras
import numpy as np
import pytest
from conftest import several_steps
from keras import ops

from vaelab.analysis import metrics
from vaelab.core.models import VAE, build_classifier, build_vae, compile_vae
from vaelab.data import to_vectors


def data(n=256, d=784, seed=0):
    return np.random.default_rng(seed).random((n, d)).astype(np.float32)


def test_vae_architecture_matches_the_lab():
    vae = build_vae()
    layers = vae.encoder.layers + vae.decoder.layers
    sizes = {layer.name: layer.units for layer in layers if hasattr(layer, "units")}
    assert sizes == {"encoder_hidden": 512, "z_mean": 32, "z_log_var": 32,
                     "decoder_hidden": 512, "decoder_output": 784}
    assert vae.decoder.get_layer("decoder_output").activation is keras.activations.linear
    assert vae.encoder.get_layer("encoder_hidden").activation is keras.activations.relu
    # 784*512+512 + 2*(512*32+32) + 32*512+512 + 512*784+784
    assert vae.model.count_params() == 401920 + 2 * 16416 + 16896 + 402192 + 1  # +1: kl_weight
    mean, log_var = vae.encoder(data(5))
    z = vae.sampling([mean, log_var])
    assert tuple(mean.shape) == tuple(log_var.shape) == tuple(z.shape) == (5, 32)
    assert tuple(vae.decoder(np.zeros((3, 32), np.float32)).shape) == (3, 784)


def test_encoder_and_decoder_share_the_models_weights():
    vae = build_vae(hidden_dim=16, latent_dim=4, input_dim=10, seed=0)
    assert vae.decoder is vae.model.layers[-1] and vae.encoder is vae.model.layers[1]
    # Make the posterior (almost) a point mass: log σ² = −40, so z = mean up to ~2e-9.
    log_var_layer = vae.encoder.get_layer("z_log_var")
    log_var_layer.kernel.assign(np.zeros(log_var_layer.kernel.shape, np.float32))
    log_var_layer.bias.assign(np.full(log_var_layer.bias.shape, -40.0, np.float32))
    x = data(6, 10)
    mean, log_var = vae.encoder(x)
    z = vae.sampling([mean, log_var])
    mean, log_var, z = (ops.convert_to_numpy(t) for t in (mean, log_var, z))
    np.testing.assert_allclose(log_var, -40.0)
    np.testing.assert_allclose(z, mean, atol=1e-6)
    np.testing.assert_allclose(ops.convert_to_numpy(vae.model(x)),
                               ops.convert_to_numpy(vae.decoder(mean)), atol=1e-5)


def test_history_reports_each_loss_term():
    keras.utils.set_random_seed(0)
    x = data()
    vae = compile_vae(build_vae(seed=0))
    history = vae.model.fit(x, x, epochs=2, batch_size=64, verbose=0,
                            validation_data=(x[:64], x[:64])).history
    for key in ("loss", "reconstruction_loss", "kl_loss", "val_loss",
                "val_reconstruction_loss", "val_kl_loss"):
        assert len(history[key]) == 2
    total = np.array(history["reconstruction_loss"]) + np.array(history["kl_loss"])
    np.testing.assert_allclose(history["loss"], total, rtol=1e-5)
    # The reconstruction term is the MSE of the model's output on the validation data.
    assert history["val_reconstruction_loss"][-1] > 0
    # The KL term: the encoder is deterministic, so exactly the scaled closed form (measured
    # 0.010286126286 vs NumPy 0.010286126254); the MSE goes through a random z, so it is
    # compared with the mean of 10 predictions (measured spread of one: 0.00078).
    means, log_vars = vae.encoder.predict(x[:64], verbose=0)
    assert history["val_kl_loss"][-1] == pytest.approx(
        metrics.kl_per_dimension(means, log_vars).sum() / 784, rel=1e-6)
    mse = np.mean([np.mean((vae.model.predict(x[:64], verbose=0) - x[:64]) ** 2)
                   for _ in range(10)])
    assert history["val_reconstruction_loss"][-1] == pytest.approx(mse, rel=0.03)
    assert history["val_reconstruction_loss"][1] < history["val_reconstruction_loss"][0]


def test_loss_is_the_sum_of_its_terms_with_short_last_batches():
    """All three are means weighted by batch size: with 100 images in batches of 32 (a last
    batch of 4) and validation batches of 24 (a last batch of 4) the sum holds exactly."""
    keras.utils.set_random_seed(1)
    x = data(100, 20)
    vae = compile_vae(build_vae(input_dim=20, hidden_dim=8, latent_dim=3, kl_scale=0.5, seed=1))
    history = vae.model.fit(x, epochs=3, batch_size=32, verbose=0, validation_data=(x[:52],),
                            validation_batch_size=24).history
    for prefix in ("", "val_"):
        total = np.add(history[f"{prefix}reconstruction_loss"], history[f"{prefix}kl_loss"])
        np.testing.assert_allclose(history[f"{prefix}loss"], total, rtol=2e-6)
        assert min(history[f"{prefix}kl_loss"]) > 0


def test_compile_with_an_optimizer_alone_or_with_the_labs_mse():
    """``compile(optimizer=...)`` takes the likelihood's loss; the lab's
    ``compile(loss="mse", optimizer="adam")`` gives the same training, step for step
    (unshuffled: Keras draws its shuffling randomness differently when a loss is compiled;
    vaelab's runs draw each epoch's order themselves, vaelab.training.feeding)."""
    x = data(64, 12)
    histories = []
    for loss in (None, "mse"):
        keras.utils.set_random_seed(2)
        vae = build_vae(input_dim=12, hidden_dim=8, latent_dim=2, seed=2)
        vae.model.compile(optimizer="adam", loss=loss)
        histories.append(vae.model.fit(x, epochs=2, batch_size=16, verbose=0,
                                       shuffle=False).history)
    np.testing.assert_allclose(histories[0]["loss"], histories[1]["loss"], rtol=1e-6)
    # The likelihood's loss is the lab's MSE: mean over pixels, then over the batch.
    vae = build_vae(input_dim=12, hidden_dim=8, latent_dim=2, seed=2)
    y_pred = vae.decoder(np.zeros((5, 2), np.float32))
    expected = np.mean((ops.convert_to_numpy(y_pred) - x[:5]) ** 2)
    value = vae.model.reconstruction_loss(ops.convert_to_tensor(x[:5]), y_pred)
    assert float(ops.convert_to_numpy(value)) == pytest.approx(expected, rel=1e-6)


def test_loss_rejects_mismatched_target_shape():
    vae = compile_vae(build_vae(input_dim=8, hidden_dim=4, latent_dim=2))
    x = data(32, 8)
    with pytest.raises(ValueError, match=r"same shape.*y=\(None, 1\)|same shape.*\(32, 1\)"):
        vae.model.fit(x, x[:, :1], epochs=1, verbose=0)


def test_save_and_load_gives_identical_encoder_means(tmp_path):
    keras.utils.set_random_seed(0)
    x = data(64)
    vae = compile_vae(build_vae(seed=2))
    vae.model.fit(x, x, epochs=1, batch_size=32, verbose=0)
    vae.sampling.kl_weight.assign(0.375)
    path = tmp_path / "vae.keras"
    vae.model.save(path)
    loaded = VAE.from_model(keras.models.load_model(path, safe_mode=True))
    before = ops.convert_to_numpy(vae.encoder.predict(x, verbose=0)[0])
    after = ops.convert_to_numpy(loaded.encoder.predict(x, verbose=0)[0])
    np.testing.assert_array_equal(before, after)
    np.testing.assert_array_equal(ops.convert_to_numpy(vae.decoder(before)),
                                  ops.convert_to_numpy(loaded.decoder(after)))
    assert float(ops.convert_to_numpy(loaded.sampling.kl_weight.value)) == 0.375
    assert loaded.sampling.kl_scale == pytest.approx(1 / 784)
    # The loaded model trains on with the same loss terms.
    history = loaded.model.fit(x, x, epochs=1, verbose=0).history
    assert set(history) >= {"loss", "reconstruction_loss", "kl_loss"}


def test_classifier_architecture():
    model = build_classifier()
    assert [layer.units for layer in model.layers] == [32, 10]
    probs = ops.convert_to_numpy(model(data(4)))
    np.testing.assert_allclose(probs.sum(-1), 1, rtol=1e-5)


@pytest.mark.mnist
def test_classifier_reaches_90_percent_on_mnist(mnist):
    (x_train, y_train), (x_test, y_test) = mnist
    model = build_classifier(seed=0)
    model.fit(to_vectors(x_train), keras.utils.to_categorical(y_train, 10),
              epochs=2, batch_size=32, verbose=0)
    _, accuracy = model.evaluate(to_vectors(x_test), keras.utils.to_categorical(y_test, 10),
                                 verbose=0)
    assert accuracy >= 0.9


def trained(steps, x, epochs=2, batch_size=16):
    """A small VAE fitted with ``steps`` training steps per compiled call."""
    keras.utils.set_random_seed(0)
    vae = compile_vae(build_vae(input_dim=x.shape[1], hidden_dim=16, latent_dim=3, seed=1))
    vae.model.steps_per_execution = steps
    history = vae.model.fit(x, x, epochs=epochs, batch_size=batch_size, verbose=0,
                            shuffle=False).history
    return vae, history


@several_steps
@pytest.mark.parametrize("steps", [4, 5])
def test_scanned_steps_train_exactly_like_single_steps(steps):
    """170 images in batches of 16: ten full batches and one of 10, grouped by 4 or 5 (JAX:
    scans of 4, 4 and 2 plus a single short step; or 5, 5 and a single step)."""
    x = data(170, 12)
    one_by_one, history_1 = trained(1, x)
    grouped, history_n = trained(steps, x)
    assert grouped.model.steps_per_execution == steps
    for a, b in zip(one_by_one.model.get_weights(), grouped.model.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for key in history_1:
        np.testing.assert_allclose(history_n[key], history_1[key], rtol=1e-5)
    if keras.backend.backend() == "jax":
        losses = np.concatenate([ops.convert_to_numpy(l) for l in
                                 grouped.model.train_function.step_losses])
        assert len(losses) == (3 if steps == 4 else 1)  # the last group of the epoch
        np.testing.assert_allclose(losses[-1], history_n["loss"][-1], rtol=1e-6)


@several_steps
def test_changing_steps_per_execution_rebuilds_the_train_function():
    x = data(64, 12)
    vae, _ = trained(4, x, epochs=1)
    vae.model.steps_per_execution = 1
    vae.model.fit(x, x, epochs=1, batch_size=16, verbose=0)
    assert getattr(vae.model.train_function, "steps", 1) == 1


def test_fit_without_targets_reconstructs_the_inputs():
    x = data(64, 12)
    histories = []
    for targets in (x, None):
        keras.utils.set_random_seed(0)
        vae = compile_vae(build_vae(input_dim=12, hidden_dim=8, latent_dim=2, seed=0))
        histories.append(vae.model.fit(x, targets, epochs=2, batch_size=16, shuffle=False,
                                       verbose=0, validation_data=(x,)).history)
    for key in histories[0]:
        np.testing.assert_allclose(histories[1][key], histories[0][key], rtol=1e-6)


def test_import_vaelab_registers_every_keras_class_it_defines():
    """Keras loads unregistered classes only from its own packages: a saved model holding a
    vaelab layer must find it after a bare ``import vaelab`` (a fresh interpreter)."""
    import subprocess
    import sys

    code = ("import importlib, inspect, pkgutil, keras, vaelab\n"
            "before = set(keras.saving.get_custom_objects())\n"
            "missing = []\n"
            "for info in pkgutil.walk_packages(vaelab.__path__, 'vaelab.'):\n"
            "    if info.name.endswith('__main__') or '.resources' in info.name: continue\n"
            "    module = importlib.import_module(info.name)\n"
            "    for name, cls in inspect.getmembers(module, inspect.isclass):\n"
            "        if cls.__module__ == info.name and issubclass(cls, (keras.layers.Layer,\n"
            "                keras.losses.Loss)) and not name.startswith('_'):\n"
            "            if keras.saving.get_registered_name(cls) not in before:\n"
            "                missing.append(f'{info.name}.{name}')\n"
            "print(sorted(missing))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
