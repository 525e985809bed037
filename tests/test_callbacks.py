import keras
import numpy as np
import pytest
from conftest import several_steps
from keras import ops

from vaelab.core import schedules
from vaelab.core.divergences import kl_standard_normal
from vaelab.core.models import build_vae, compile_vae
from vaelab.training.callbacks import KLAnnealing, KLSchedule


def test_kl_annealing_lab_weights_over_20_epochs(capsys):
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).random((16, 6)).astype(np.float32)
    vae = compile_vae(build_vae(input_dim=6, hidden_dim=4, latent_dim=2, seed=0))
    history = vae.model.fit(x, x, epochs=20, batch_size=16, verbose=0,
                            callbacks=[KLAnnealing(epoch_start=4, duration_epochs=8)]).history
    assert history["kl_weight"] == [0, 0, 0, 0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875] + [1.0] * 9
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 20
    assert lines[0] == "epoch 1: KL weight 0 (annealing starts at epoch 4)"
    assert lines[4] == "epoch 5: KL weight 0.125"


def test_kl_annealing_is_silenceable_and_validates(capsys):
    x = np.zeros((4, 3), np.float32)
    vae = compile_vae(build_vae(input_dim=3, hidden_dim=2, latent_dim=1))
    vae.model.fit(x, x, epochs=2, verbose=0, callbacks=[KLAnnealing(1, 1, verbose=False)])
    assert capsys.readouterr().out == ""
    with pytest.raises(ValueError, match="Received: duration_epochs=0"):
        KLAnnealing(4, 0)


def test_schedule_callback_needs_a_sampling_layer():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)], name="plain")
    model.compile(loss="mse")
    with pytest.raises(ValueError, match="'plain' has none"):
        model.fit(np.zeros((2, 2)), np.zeros((2, 2)), verbose=0,
                  callbacks=[KLSchedule(schedules.constant, verbose=False)])


@pytest.mark.parametrize("steps", [1, pytest.param(4, marks=several_steps)])
def test_annealing_really_changes_the_compiled_loss(steps):
    """The trap: under JAX a KL weight frozen into the compiled step would do nothing.

    With the encoder frozen, the KL of every example is fixed, so the KL term the
    model adds in epoch e must be exactly weight(e) · kl_scale · mean KL. With
    ``steps=4`` each epoch's four batches run as one compiled scan.
    """
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.random((128, 20)).astype(np.float32)
    kl_scale = 0.05
    vae = compile_vae(build_vae(input_dim=20, hidden_dim=8, latent_dim=3,
                                kl_scale=kl_scale, seed=0))
    vae.encoder.trainable = False
    compile_vae(vae)  # recompile after changing trainability
    vae.model.steps_per_execution = steps
    mean, log_var = vae.encoder(x)
    mean_kl = float(ops.convert_to_numpy(ops.mean(kl_standard_normal(mean, log_var))))
    assert mean_kl > 0.1
    history = vae.model.fit(x, x, epochs=6, batch_size=32, verbose=0,
                            callbacks=[KLAnnealing(epoch_start=2, duration_epochs=4, verbose=False)]
                            ).history
    weights = [0, 0, 0.25, 0.5, 0.75, 1.0]
    assert history["kl_weight"] == weights
    expected = np.array(weights) * kl_scale * mean_kl
    np.testing.assert_allclose(history["kl_loss"], expected, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(history["loss"],
                               np.add(history["reconstruction_loss"], history["kl_loss"]), rtol=1e-5)


@pytest.mark.parametrize("steps", [1, pytest.param(5, marks=several_steps)])
def test_non_finite_loss_is_found_at_its_batch_inside_a_scanned_group(steps):
    """An image with a NaN pixel makes the 7th batch's loss NaN; with steps grouped by 5
    the guard checks at the group's end and still names batch 7."""
    from vaelab.training.callbacks import StopOnNonFinite

    x = np.random.default_rng(0).random((160, 12)).astype(np.float32)  # 10 batches of 16
    x[6 * 16 + 3, 5] = np.nan
    keras.utils.set_random_seed(0)
    vae = compile_vae(build_vae(input_dim=12, hidden_dim=8, latent_dim=2, seed=0))
    vae.model.steps_per_execution = steps
    guard = StopOnNonFinite()
    history = vae.model.fit(x, x, epochs=3, batch_size=16, shuffle=False, verbose=0,
                            callbacks=[guard]).history
    assert guard.where == (1, 7)
    assert vae.model.stop_training
    assert len(history["loss"]) == 1 and np.isnan(history["loss"][0])
