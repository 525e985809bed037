"""Richer latent models: two stochastic layers, the IAF posterior, the VampPrior.

Densities against hand-written formulas, the flow's Jacobian against autodiff, the
VampPrior's Monte Carlo KL against a brute-force integral, and the IWAE estimate of
−log p(x) against the marginal likelihood integrated on a grid.
"""

import math

import keras
import numpy as np
import pytest
from keras import ops

from vaelab.analysis import bounds, layers
from vaelab.core import latents
from vaelab.core.keras_seam import seeded
from vaelab.core.models import VAE
from vaelab.core.models.mlp import build_vae

jax_only = pytest.mark.skipif(keras.backend.backend() != "jax",
                              reason="autodiff through jax.jacfwd")


def to_np(value):
    return np.asarray(ops.convert_to_numpy(value), np.float64)


def stack(latent=3, **kwargs):
    layer = latents.LatentStack(kl_scale=1.0, seed=1, **kwargs)
    with seeded(3):
        layer.build([(None, latent), (None, latent)])
    return layer


def randomize(layer, seed=0, scale=0.5):
    """Non-zero biases too, so that no term vanishes by its initial value."""
    rng = np.random.default_rng(seed)
    for weight in layer.weights:
        if weight.trainable:
            weight.assign(rng.normal(0, scale, weight.shape).astype(np.float32))


def np_normal(z, mean, log_var):
    return -0.5 * (math.log(2 * math.pi) + log_var + (z - mean) ** 2 / np.exp(log_var))


def np_net(net, h, activation=np.tanh):
    hidden, (mean_head, log_var_head) = net
    for layer in hidden:
        h = activation(h @ to_np(layer.kernel) + to_np(layer.bias))
    return (h @ to_np(mean_head.kernel) + to_np(mean_head.bias),
            h @ to_np(log_var_head.kernel) + to_np(log_var_head.bias))


# ------------------------------------------------------------------ two layers


def test_two_layer_densities_are_the_hand_written_ones():
    layer = stack(latent=3, upper=[(2, (5,))])
    randomize(layer)
    rng = np.random.default_rng(1)
    mean, log_var = rng.normal(size=(4, 3)), rng.normal(0, 0.3, (4, 3))
    eps = rng.standard_normal((4, 5))
    parts = layer.draw_layers(mean.astype(np.float32), log_var.astype(np.float32),
                              eps.astype(np.float32))
    z1 = mean + np.exp(0.5 * log_var) * eps[:, :3]
    m2, v2 = np_net(layer.up_nets[0], z1)
    z2 = m2 + np.exp(0.5 * v2) * eps[:, 3:]
    p_mean, p_log_var = np_net(layer.down_nets[0], z2)
    expected = [
        (np_normal(z1, p_mean, p_log_var).sum(-1), np_normal(z1, mean, log_var).sum(-1)),
        (np_normal(z2, 0, 0).sum(-1), np_normal(z2, m2, v2).sum(-1)),
    ]
    np.testing.assert_allclose(to_np(parts[0]["z"]), z1, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(to_np(parts[1]["z"]), z2, rtol=1e-4, atol=1e-5)
    for part, (log_p, log_q) in zip(parts, expected):
        np.testing.assert_allclose(to_np(part["log_p"]), log_p, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(to_np(part["log_q"]), log_q, rtol=1e-4, atol=1e-4)
    # The top layer's KL in the ELBO is the closed form given z1: its Monte Carlo mean agrees.
    kls = layer.layer_kls(parts)
    closed = -0.5 * (1 + v2 - m2 ** 2 - np.exp(v2))
    np.testing.assert_allclose(to_np(kls[1]), closed, rtol=1e-4, atol=1e-5)


def test_the_elbo_adds_one_kl_per_layer_and_the_history_reports_them():
    x = (np.random.default_rng(0).random((32, 12)) > 0.5).astype(np.float32)
    with seeded(0):
        vae = build_vae(12, (6,), 3, 1.0, seed=0, likelihood="bernoulli", activation="tanh",
                        upper=[(2, (4,))])
    vae.model.compile(optimizer=keras.optimizers.Adam(1e-3))
    history = vae.model.fit(x, batch_size=16, epochs=1, verbose=0).history
    assert history["kl_loss"][0] == pytest.approx(
        history["kl_loss_1"][0] + history["kl_loss_2"][0], rel=1e-5)
    assert history["loss"][0] == pytest.approx(
        history["reconstruction_loss"][0] + history["kl_loss"][0], rel=1e-5)
    vae.model(x[:4])
    assert len(vae.model.losses) == 2


def test_free_bits_apply_per_dimension_of_each_layer():
    layer = stack(latent=3, upper=[(2, (4,))], free_bits=5.0)
    rng = np.random.default_rng(2)
    mean = ops.convert_to_tensor(rng.normal(0, 0.1, (8, 3)).astype(np.float32))
    log_var = ops.convert_to_tensor(np.zeros((8, 3), np.float32))
    layer([mean, log_var])
    # Every dimension's KL is far below 5 nats: each layer costs 5 × its dimensions.
    np.testing.assert_allclose([float(to_np(v)) for v in layer.losses], [15.0, 10.0])
    # One λ per layer: the first layer's plain KL, the second's 5 nats per dimension.
    per_layer = stack(latent=3, upper=[(2, (4,))], free_bits=[0.0, 5.0])
    per_layer([mean, log_var])
    without = stack(latent=3, upper=[(2, (4,))])  # the same weights and noise
    without([mean, log_var])
    assert float(to_np(per_layer.losses[0])) == pytest.approx(float(to_np(without.losses[0])))
    assert float(to_np(per_layer.losses[1])) == pytest.approx(10.0)
    restored = latents.LatentStack.from_config(per_layer.get_config())
    assert restored.layer_free_bits() == [0.0, 5.0]


# ------------------------------------------------------------------ the flow


@jax_only
@pytest.mark.parametrize("steps, context", [(1, False), (3, False), (1, True), (2, True)])
def test_the_flow_is_autoregressive_and_its_log_det_is_the_jacobians(steps, context):
    """With a context (the encoder's [mean, log_var], fixed for a given x) as without."""
    import jax
    import jax.numpy as jnp

    layer = stack(latent=4, flow_steps=steps, flow_width=9, activation="tanh",
                  flow_context=context)
    randomize(layer, seed=steps)
    rng = np.random.default_rng(5)
    z0 = jnp.asarray(rng.normal(size=4), jnp.float32)
    c = jnp.asarray(rng.normal(size=8), jnp.float32) if context else None
    jacobian = np.asarray(jax.jacfwd(lambda z: layer._flow(z, c)[0])(z0), np.float64)
    log_det = float(layer._flow(z0, c)[1])
    sign, log_abs = np.linalg.slogdet(jacobian)
    assert sign > 0
    assert log_det == pytest.approx(log_abs, abs=1e-4)
    if steps == 1:  # one step: lower triangular, its diagonal the gates
        assert np.allclose(np.triu(jacobian, 1), 0)
    # MADE: the shift and gate of dimension d depend on dimensions before d only.
    h1, h2, m_head, s_head, *rest = layer.flow[0]
    if context:
        tanh = keras.activations.get("tanh")
        first = lambda z: tanh(h1(z) + rest[0](c))  # noqa: E731
    else:
        first = h1
    for head in (m_head, s_head):
        made = np.asarray(jax.jacfwd(lambda z: head(h2(first(z))))(z0), np.float64)
        assert np.allclose(np.triu(made), 0)
        assert not np.allclose(np.tril(made, -1), 0)


def test_a_flow_with_a_context_depends_on_it():
    """Kingma et al.'s context: the same z₀ under two images' [mean, log_var] flows to two
    points with two log-determinants; without a context the flow ignores them."""
    z0 = np.random.default_rng(1).normal(size=(1, 4)).astype(np.float32)
    c1, c2 = np.random.default_rng(2).normal(size=(2, 1, 8)).astype(np.float32)
    with_context = stack(latent=4, flow_steps=2, flow_width=6, flow_context=True)
    randomize(with_context, seed=3)
    (za, da), (zb, db) = (with_context._flow(z0, c) for c in (c1, c2))
    assert np.abs(to_np(za) - to_np(zb)).max() > 1e-3
    assert abs(float(to_np(da)[0]) - float(to_np(db)[0])) > 1e-4
    with pytest.raises(ValueError, match="needs the encoder's"):
        with_context._flow(z0)
    plain = stack(latent=4, flow_steps=2, flow_width=6)
    randomize(plain, seed=3)
    np.testing.assert_array_equal(to_np(plain._flow(z0, c1)[0]), to_np(plain._flow(z0, c2)[0]))
    assert len(with_context.trainable_weights) == len(plain.trainable_weights) + 2 * 2
    with pytest.raises(ValueError, match="flow_context needs flow_steps"):
        latents.LatentStack(flow_context=True)


def test_the_flow_returns_z_in_the_encoders_order():
    """Every other step works reversed; with the second step made the identity (gate 1),
    two steps give the first step's output, dimension by dimension."""
    layer = stack(latent=4, flow_steps=2, flow_width=6)
    randomize(layer, seed=8)
    h1, h2, m_head, s_head = layer.flow[1]
    s_head.kernel.assign(np.zeros(s_head.kernel.shape, np.float32))
    s_head.bias.assign(np.full(s_head.bias.shape, 40.0, np.float32))
    z0 = np.random.default_rng(3).normal(size=(5, 4)).astype(np.float32)
    a1, a2, m1, s1 = layer.flow[0]
    h = a2(a1(z0))
    gate = 1 / (1 + np.exp(-(to_np(s1(h)) + latents.FLOW_GATE_SHIFT)))
    expected = gate * z0 + (1 - gate) * to_np(m1(h))
    np.testing.assert_allclose(to_np(layer._flow(z0)[0]), expected, rtol=1e-5, atol=1e-6)


def test_active_units_after_a_flow_discount_the_draws_own_noise():
    """An encoder that ignores its input: every unit is collapsed, whatever the flow does,
    though the average of 100 draws of z_T still varies by more than 0.01 (the threshold)
    over the images."""
    with seeded(0):
        vae = build_vae(12, (6,), 8, 1.0, seed=0, likelihood="bernoulli", flow_steps=2)
    randomize(vae.sampling, seed=2, scale=0.3)
    for name, bias in (("z_mean", 0.0), ("z_log_var", 2.0)):
        head = vae.encoder.get_layer(name)
        head.kernel.assign(np.zeros(head.kernel.shape, np.float32))
        head.bias.assign(np.full(head.bias.shape, bias, np.float32))
    x = (np.random.default_rng(0).random((400, 12)) > 0.5).astype(np.float32)
    stats = layers.layer_statistics(vae, x, samples=100)[0]
    # Uncorrected, the draws' own noise would make most units look active.
    assert np.sum(stats["means"].var(axis=0) > 0.01) >= 4
    assert stats["active_units"] == 0


def test_made_degrees_and_masks():
    assert list(latents.made_degrees(4, 7)) == [1, 2, 3, 1, 2, 3, 1]
    assert list(latents.made_degrees(1, 3)) == [1, 1, 1]
    out = latents.MaskedDense([1, 2, 3], [1, 2, 3], strict=True)
    np.testing.assert_array_equal(out.mask, [[0, 1, 1], [0, 0, 1], [0, 0, 0]])
    hidden = latents.MaskedDense([1, 2, 3], [1, 2], strict=False)
    np.testing.assert_array_equal(hidden.mask, [[1, 1], [0, 1], [0, 0]])


def test_a_flow_with_free_bits_or_upper_layers_is_refused():
    with pytest.raises(ValueError, match="free bits need a KL per dimension"):
        latents.LatentStack(flow_steps=2, flow_width=4, free_bits=1.0)
    with pytest.raises(ValueError, match="neither a flow nor a VampPrior"):
        latents.LatentStack(upper=[(2, (4,))], flow_steps=2, flow_width=4)


# ------------------------------------------------------------------ the VampPrior


def test_the_mixture_density_is_the_direct_sum():
    rng = np.random.default_rng(6)
    means, log_vars = rng.normal(size=(5, 3)), rng.normal(0, 0.5, (5, 3))
    z = rng.normal(0, 2, (2, 7, 3))
    direct = np.log(np.mean([np.exp(np_normal(z, m, v).sum(-1)) for m, v in zip(means, log_vars)],
                            axis=0))
    got = to_np(latents.log_mixture(*(ops.convert_to_tensor(a.astype(np.float32))
                                      for a in (z, means, log_vars))))
    np.testing.assert_allclose(got, direct, rtol=1e-4, atol=1e-4)


def test_the_vamp_prior_monte_carlo_kl_matches_a_brute_force_integral():
    """KL(q ‖ p) with p a 3-component mixture on one dimension: the one-sample estimate
    log q(z) − log p(z) the ELBO uses, averaged, against the integral on a fine grid."""
    layer = stack(latent=1, components=3)
    prior = (np.array([[-1.5], [0.2], [2.0]], np.float32), np.array([[-1.0], [0.3], [-0.5]],
                                                                     np.float32))
    mean, log_var = np.float32(0.7), np.float32(-0.8)
    grid = np.linspace(-12, 12, 200_001)
    log_q = np_normal(grid, mean, log_var)
    log_p = np.log(np.mean([np.exp(np_normal(grid, m, v)) for m, v in zip(*prior)], axis=0))
    exact = np.sum(np.exp(log_q) * (log_q - log_p)) * (grid[1] - grid[0])
    draws = 200_000
    eps = np.random.default_rng(7).standard_normal((draws, 1)).astype(np.float32)
    parts = layer.draw_layers(np.full((draws, 1), mean), np.full((draws, 1), log_var), eps,
                              tuple(ops.convert_to_tensor(a) for a in prior))
    estimate = to_np(layer.layer_kls(parts)[0])
    se = estimate.std(ddof=1) / math.sqrt(draws)
    assert abs(estimate.mean() - exact) < 4 * se, (estimate.mean(), exact, se)
    assert se < 0.01


def test_a_vamp_prior_model_feeds_the_encoder_its_pseudo_inputs(tmp_path):
    with seeded(0):
        vae = build_vae(12, (6,), 2, 1.0, seed=0, likelihood="bernoulli", components=4)
    pseudo = vae.model.pseudo_inputs()
    values = to_np(pseudo.values())
    assert values.shape == (4, 12) and values.min() >= 0 and values.max() <= 1
    means, log_vars = vae.model.prior_components()
    expected = vae.encoder(pseudo.values())
    np.testing.assert_allclose(to_np(means), to_np(expected[0]), rtol=1e-6)
    np.testing.assert_allclose(to_np(log_vars), to_np(expected[1]), rtol=1e-6)
    with pytest.raises(ValueError, match="pseudo-inputs have no labels"):
        build_vae(12, (6,), 2, 1.0, classes=3, components=4)


@pytest.mark.parametrize("kwargs", [dict(upper=[(2, (4,))]), dict(flow_steps=2),
                                    dict(components=3, flow_steps=1),
                                    dict(flow_steps=2, flow_context=True)])
def test_saved_models_load_with_their_latent_model(tmp_path, kwargs):
    with seeded(0):
        vae = build_vae(12, (6,), 3, 1.0, seed=0, likelihood="bernoulli", **kwargs)
    randomize(vae.sampling, seed=4, scale=0.3)
    vae.model.save(tmp_path / "m.keras")
    loaded = VAE.from_model(keras.saving.load_model(tmp_path / "m.keras"))
    assert type(loaded.sampling) is latents.LatentStack
    rng = np.random.default_rng(0)
    x = (rng.random((5, 12)) > 0.5).astype(np.float32)
    eps = rng.standard_normal((5, 7, bounds.noise_width(vae))).astype(np.float32)
    for a, b in zip(bounds._log_weight_model(vae, "bernoulli", None).predict_on_batch(
                        [x, *vae.encode(x), eps]),
                    bounds._log_weight_model(loaded, "bernoulli", None).predict_on_batch(
                        [x, *loaded.encode(x), eps])):
        np.testing.assert_allclose(a, b, rtol=1e-6)


# ------------------------------------------------ IWAE against the exact marginal


PATTERNS = np.array([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)], np.float32)


def _log_px_given(vae, z):
    """log p(x | z) of every pattern: ``(patterns, n)`` for ``z (n, L)``."""
    logits = to_np(vae.decoder(z.astype(np.float32)))                   # (n, 3)
    return (PATTERNS[:, None, :] * logits[None] - np.logaddexp(0, logits)[None]).sum(-1)


def _iwae_against_exact(vae, exact, k=20_000):
    nll, se, used = bounds.iwae_nll(vae, PATTERNS, k, "bernoulli", None, seed=1)
    assert used == k
    assert nll == pytest.approx(float(-exact.mean()), abs=0.02), (nll, -exact.mean())
    elbo, _ = bounds.elbo(vae, PATTERNS, "bernoulli", None, samples=200, seed=2)
    assert elbo < -nll  # the ELBO lies below log p(x)


def test_iwae_of_a_two_layer_model_converges_to_the_marginal_likelihood():
    """p(x) = ∬ p(x|z₁) p(z₁|z₂) p(z₂) dz₁ dz₂ on a 1 + 1-dimensional latent, by a grid."""
    with seeded(1):
        vae = build_vae(3, (8,), 1, 1.0, seed=0, likelihood="bernoulli", activation="tanh",
                        upper=[(1, (8,))])
    grid = np.linspace(-8, 8, 801)
    step = grid[1] - grid[0]
    p_mean, p_log_var = (to_np(v)[:, 0] for v in latents.LatentStack._run_gaussian_net(
        vae.sampling.down_nets[0], grid[:, None].astype(np.float32)))          # per z2
    log_joint_z = (np_normal(grid[None, :], p_mean[:, None], p_log_var[:, None])
                   + np_normal(grid, 0, 0)[:, None])                           # (z2, z1)
    log_z = np.logaddexp.reduce(log_joint_z, axis=0) + math.log(step)         # log p(z1)
    log_px = _log_px_given(vae, grid[:, None])                                 # (8, z1)
    exact = np.logaddexp.reduce(log_px + log_z[None], axis=1) + math.log(step)
    _iwae_against_exact(vae, exact)


def test_iwae_with_a_vamp_prior_converges_to_the_marginal_likelihood():
    with seeded(2):
        vae = build_vae(3, (8,), 1, 1.0, seed=0, likelihood="bernoulli", components=3)
    grid = np.linspace(-10, 10, 4001)
    means, log_vars = (to_np(v) for v in vae.model.prior_components())
    log_prior = np.logaddexp.reduce(
        np_normal(grid[:, None], means[:, 0], log_vars[:, 0]), axis=1) - math.log(3)
    log_px = _log_px_given(vae, grid[:, None])
    exact = np.logaddexp.reduce(log_px + log_prior[None], axis=1) + math.log(grid[1] - grid[0])
    _iwae_against_exact(vae, exact)


@pytest.mark.parametrize("context", [False, True])
def test_iwae_with_a_flow_posterior_converges_to_the_marginal_likelihood(context):
    """The marginal does not depend on q: the flow's log-determinant must be in the weights."""
    with seeded(3):
        vae = build_vae(3, (8,), 2, 1.0, seed=0, likelihood="bernoulli", activation="tanh",
                        flow_steps=2, flow_context=context)
    randomize(vae.sampling, seed=9, scale=0.4)
    # Each step shrinks z (σ < 1): from a wide start q stays wider than the posterior, so
    # that the importance weights are bounded and k = 20 000 converges.
    vae.encoder.get_layer("z_log_var").bias.assign(np.full(2, 2.0, np.float32))
    grid = np.linspace(-7, 7, 281)
    z = np.stack(np.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 2)
    log_prior = np_normal(z, 0, 0).sum(-1)
    log_px = _log_px_given(vae, z)
    exact = np.logaddexp.reduce(log_px + log_prior[None], axis=1) + 2 * math.log(grid[1] - grid[0])
    _iwae_against_exact(vae, exact)


# ------------------------------------------------------------------ prior draws


def test_prior_draws_go_top_down_or_pick_a_component():
    with seeded(0):
        two = build_vae(12, (6,), 3, 1.0, seed=0, activation="tanh", upper=[(2, (4,))])
        vamp = build_vae(12, (6,), 3, 1.0, seed=0, components=4)
        plain = build_vae(12, (6,), 3, 1.0, seed=0)
    randomize(two.sampling, seed=2)
    z = two.prior_draws(6, np.random.default_rng(5))
    eps = np.random.default_rng(5).standard_normal((6, 5))
    p_mean, p_log_var = np_net(two.sampling.down_nets[0], eps[:, 3:])
    np.testing.assert_allclose(z, p_mean + np.exp(0.5 * p_log_var) * eps[:, :3], rtol=1e-4,
                               atol=1e-5)
    z = vamp.prior_draws(6, np.random.default_rng(5))
    rng = np.random.default_rng(5)
    eps, choice = rng.standard_normal((6, 3)), rng.integers(4, size=6)
    means, log_vars = (to_np(v) for v in vamp.model.prior_components())
    np.testing.assert_allclose(z, means[choice] + np.exp(0.5 * log_vars[choice]) * eps,
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(plain.prior_draws(6, np.random.default_rng(5)),
                                  np.random.default_rng(5).standard_normal((6, 3)))
    from vaelab.analysis.plots import prior_name  # the samples' title says which prior

    assert [prior_name(vae) for vae in (two, vamp, plain)] == [
        "z2 ~ N(0, I), then down to z1", "z from the VampPrior (4 pseudo-inputs)", "z ~ N(0, I)"]


# ------------------------------------------------ the IWAE objective with these models


@pytest.mark.parametrize("kwargs", [dict(upper=[(2, (4,))]), dict(components=3, flow_steps=2),
                                    dict(flow_steps=2, flow_context=True)])
def test_training_and_evaluation_compute_the_same_log_weights(kwargs):
    """The IWAE loss's log-weights (objectives.log_weights, every layer through the decoder)
    and evaluation's (the Gaussian square expanded around the decoder's last layer)."""
    from vaelab.core import likelihoods, objectives

    with seeded(5):
        vae = build_vae(12, (6,), 3, 1 / 12, seed=0, likelihood="gaussian", activation="tanh",
                        **kwargs)
    randomize(vae.sampling, seed=6, scale=0.3)
    rng = np.random.default_rng(7)
    x = rng.random((5, 12)).astype(np.float32)
    eps = rng.standard_normal((5, 4, bounds.noise_width(vae))).astype(np.float32)
    mean, log_var = vae.encode(x)
    gaussian = likelihoods.get("gaussian")
    variance = gaussian.variance(12, 1 / 12)
    trained = to_np(objectives.log_weights(vae.decoder, gaussian, variance, x, mean, log_var,
                                           eps, None, vae.sampling,
                                           vae.model.prior_components())[0])
    model = bounds._log_weight_model(vae, gaussian, variance)
    assert model.layers[-1].last is not None  # the expanded path
    evaluated = model.predict_on_batch([x, mean, log_var, eps])
    np.testing.assert_allclose(evaluated, trained, rtol=1e-4, atol=1e-3)


def test_iwae_training_of_two_layers_reports_each_layer():
    x = (np.random.default_rng(0).random((32, 12)) > 0.5).astype(np.float32)
    with seeded(0):
        vae = build_vae(12, (6,), 3, 1.0, seed=0, likelihood="bernoulli", activation="tanh",
                        upper=[(2, (4,))], objective="iwae:4")
    vae.model.compile(optimizer=keras.optimizers.Adam(1e-3))
    history = {k: v[0] for k, v in vae.model.fit(x, batch_size=16, epochs=1,
                                                 verbose=0).history.items()}
    assert history["kl_loss"] == pytest.approx(history["kl_loss_1"] + history["kl_loss_2"],
                                               rel=1e-5)
    assert history["loss"] == pytest.approx(history["reconstruction_loss"] + history["kl_loss"]
                                            - history["importance_gain"], rel=1e-5)
    assert history["importance_gain"] > 0 and history["iwae_bound"] == pytest.approx(
        -history["loss"], rel=1e-6)


@pytest.mark.parametrize("spelling", [
    dict(posterior="iaf:2"), dict(posterior="iaf:2:context"),
    dict(prior="vamp:3", posterior="iaf:1:context"),
    dict(latent_dim=(4, 2), hidden_dim=((8,), (6,)))])
def test_the_spelling_builds_the_model_preflight_counts(spelling):
    """``--posterior iaf:N:context`` is N steps with a context; preflight's parameter count
    (its memory estimate) is the built model's, less the KL weight."""
    from vaelab.core.config import TrainConfig
    from vaelab.training import preflight
    from vaelab.training.trainer import new_vae

    config = TrainConfig(epochs=1, likelihood="bernoulli", **{"latent_dim": 4, "hidden_dim": (8,),
                                                              **spelling})
    assert config.flow_context == spelling.get("posterior", "").endswith(":context")
    assert config.flow_steps == int(spelling.get("posterior", "iaf:0").split(":")[1])
    vae = new_vae(config, 12)
    assert vae.sampling.flow_context == config.flow_context
    assert preflight.parameters(config, 12) == vae.model.count_params() - 1
