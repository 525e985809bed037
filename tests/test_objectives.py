"""The training objectives: β, free bits and the importance-weighted bound, against formulas,
a linear-Gaussian model whose log-likelihood is exact, and the training loop's history."""

import math

import keras
import numpy as np
import pytest
from conftest import jacobians
from keras import ops

from vaelab.core import likelihoods, objectives
from vaelab.core.config import TrainConfig, UsageError
from vaelab.core.layers import Sampling
from vaelab.core.models.mlp import build_vae
from vaelab.core.models.vae import VAE, compile_vae


def to_np(x):
    return np.asarray(ops.convert_to_numpy(x), dtype=np.float64)


# ------------------------------------------------------------------ parsing


@pytest.mark.parametrize("text, k", [("elbo", 1), ("iwae:1", 1), ("iwae:50", 50)])
def test_parse_objectives(text, k):
    objective = objectives.parse(text)
    assert (objective.name, objective.samples) == (text, k)


@pytest.mark.parametrize("text", ["iwae:0", "iwae:x", "iwae:", "iwae:-3", "iwae:05", "iwae",
                                  "ELBO", "vae", "", None, 5, "iwae:2.5"])
def test_parse_refuses_unknown_objectives(text):
    with pytest.raises(ValueError, match=r"^--objective must be elbo or iwae:K .*received"):
        objectives.parse(text)


# --------------------------------------------------------------- IWAE value


def _linear_gaussian(seed=0, pixels=3, latent=2, variance=0.3):
    """x = W z + b + noise: a model with an exact marginal p(x) = N(b, W Wᵀ + σ² I)."""
    rng = np.random.default_rng(seed)
    w = rng.normal(0, 1.0, (latent, pixels))       # rows: z (L) @ W (L, D)
    b = rng.normal(0, 0.5, pixels)
    return w, b, variance


def _exact_log_px(x, w, b, variance):
    cov = w.T @ w + variance * np.eye(len(b))
    r = x - b
    _, logdet = np.linalg.slogdet(cov)
    quad = np.einsum("nd,de,ne->n", r, np.linalg.inv(cov), r)
    return -0.5 * (len(b) * math.log(2 * math.pi) + logdet + quad)


def test_iwae_bound_rises_to_the_exact_log_likelihood():
    """E[L_K] ≤ log p(x) for every K, rises with K, and is within 0.05 nats at K = 1000,
    on a linear-Gaussian model with an approximate (shrunk, widened) posterior."""
    w, b, variance = _linear_gaussian()
    rng = np.random.default_rng(1)
    x = b + rng.normal(0, 1.5, (4, len(b)))
    exact = _exact_log_px(x, w, b, variance)
    # The exact posterior, then a deliberately worse q(z|x).
    cov = np.linalg.inv(np.eye(len(w)) + w @ w.T / variance)
    mean_post = (x - b) @ w.T @ cov / variance
    mean, log_var = 0.5 * mean_post, np.log(3.0 * np.diag(cov)) + np.zeros_like(mean_post)
    gaussian = likelihoods.get("gaussian")

    def decode(rows):
        return ops.matmul(rows, ops.convert_to_tensor(w, "float32")) + b.astype(np.float32)

    repeats, bounds = 200, {}
    for k in (1, 5, 50, 2000):
        xs, ms, vs = (np.repeat(a, repeats, 0).astype(np.float32) for a in (x, mean, log_var))
        eps = rng.standard_normal((len(xs), k, len(w))).astype(np.float32)
        log_w = to_np(objectives.log_weights(decode, gaussian, variance, xs, ms, vs, eps)[0])
        bound = (np.logaddexp.reduce(log_w, axis=1) - math.log(k)).reshape(len(x), repeats)
        means, ses = bound.mean(1), bound.std(1, ddof=1) / math.sqrt(repeats)
        assert np.all(means <= exact + 3 * ses + 1e-4), (k, means, exact)
        bounds[k] = means
    gaps = {k: exact - b for k, b in bounds.items()}
    assert np.all(gaps[1] > 0.5), gaps[1]                   # q is far from the posterior
    assert np.all(gaps[5] < 0.6 * gaps[1]) and np.all(gaps[50] < 0.6 * gaps[5]), gaps
    np.testing.assert_allclose(bounds[2000], exact, atol=0.03)


def _single_sample_elbo(x, mean, log_var, eps, kernel, bias, scale):
    """The single-sample ELBO objective at z = μ + σ ε, written out: per-pixel MSE plus
    scale × (log q(z|x) − log p(z)), batch mean (keras.ops, differentiable)."""
    z = mean + ops.exp(0.5 * log_var) * eps
    x_hat = ops.matmul(z, kernel) + bias
    mse = ops.mean(ops.square(x - x_hat), axis=-1)
    log_q = -0.5 * ops.sum(math.log(2 * math.pi) + log_var + ops.square(eps), -1)
    log_p = -0.5 * ops.sum(math.log(2 * math.pi) + ops.square(z), -1)
    return ops.mean(mse + scale * (log_q - log_p))


def test_iwae_1_is_the_single_sample_elbo_value_and_gradients():
    """With the same noise, iwae:1's loss and its gradients with respect to the encoder's
    outputs and the decoder's weights equal those of the single-sample ELBO."""
    rng = np.random.default_rng(2)
    pixels, latent, batch, scale = 6, 3, 5, 1 / 6
    x = rng.random((batch, pixels)).astype(np.float32)
    mean = rng.normal(size=(batch, latent)).astype(np.float32)
    log_var = rng.normal(0, 0.5, (batch, latent)).astype(np.float32)
    kernel = rng.normal(size=(latent, pixels)).astype(np.float32)
    bias = rng.normal(size=pixels).astype(np.float32)
    eps = rng.standard_normal((batch, 1, latent)).astype(np.float32)
    gaussian = likelihoods.get("gaussian")
    variance = gaussian.variance(pixels, scale)

    def iwae(m, v, kern, bia):
        parts = objectives.log_weights(lambda rows: ops.matmul(rows, kern) + bia, gaussian,
                                       variance, x, m, v, eps)
        return objectives.iwae_terms(*parts, scale, gaussian.log_normalizer(pixels, variance))["loss"]

    def elbo(m, v, kern, bia):
        return _single_sample_elbo(x, m, v, eps[:, 0], kern, bia, scale)

    args = (mean, log_var, kernel, bias)
    assert float(to_np(iwae(*args))) == pytest.approx(float(to_np(elbo(*args))), rel=1e-5)
    for got, want in zip(jacobians(iwae, *args), jacobians(elbo, *args)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_iwae_1_matches_the_closed_form_elbo_in_expectation():
    """Averaged over draws, iwae:1's loss is the lab's ELBO loss (analytic KL)."""
    rng = np.random.default_rng(3)
    pixels, latent, scale = 4, 2, 1 / 4
    x = rng.random((2, pixels)).astype(np.float32)
    mean = rng.normal(size=(2, latent)).astype(np.float32)
    log_var = rng.normal(0, 0.3, (2, latent)).astype(np.float32)
    kernel = rng.normal(size=(latent, pixels)).astype(np.float32)
    bias = np.zeros(pixels, np.float32)
    draws = 20000
    eps = rng.standard_normal((2 * draws, 1, latent)).astype(np.float32)
    xs, ms, vs = (np.repeat(a, draws, 0) for a in (x, mean, log_var))
    gaussian = likelihoods.get("gaussian")
    variance = gaussian.variance(pixels, scale)
    _, log_px, (log_ratio,) = objectives.log_weights(
        lambda rows: ops.matmul(rows, kernel) + bias, gaussian, variance, xs, ms, vs, eps)
    per_draw = scale * (-to_np(log_px)[:, 0] - gaussian.log_normalizer(pixels, variance)) \
        - scale * to_np(log_ratio)[:, 0]
    # The closed form: E‖x − (μ + σε)W‖²/D = ‖x − μW‖²/D + Σ_l σ_l² ‖W_l‖²/D, plus s·KL.
    sigma2 = np.exp(log_var.astype(np.float64))
    expected_mse = (np.mean((x - mean @ kernel) ** 2, -1)
                    + sigma2 @ np.sum(kernel.astype(np.float64) ** 2, 1) / pixels)
    kl = -0.5 * np.sum(1 + log_var - mean**2 - np.exp(log_var), -1)
    expected = np.mean(expected_mse + scale * kl)
    se = per_draw.std(ddof=1) / math.sqrt(len(per_draw))
    assert abs(per_draw.mean() - expected) < 4 * se, (per_draw.mean(), expected, se)


def test_iwae_terms_add_up_and_the_gain_is_never_negative():
    rng = np.random.default_rng(4)
    log_px = rng.normal(-50, 5, (6, 7)).astype(np.float32)
    log_ratio = rng.normal(-3, 2, (6, 7)).astype(np.float32)
    terms = {name: float(to_np(v)) for name, v in objectives.iwae_terms(
        log_px + log_ratio, log_px, [log_ratio], 0.25, 10.0).items()}
    log_w = log_px.astype(np.float64) + log_ratio
    bound = np.mean(np.logaddexp.reduce(log_w, axis=1) - math.log(7))
    assert terms["iwae_bound"] == pytest.approx(bound, rel=1e-5)
    assert terms["loss"] == pytest.approx(0.25 * (-bound - 10.0), rel=1e-5)
    assert terms["importance_gain"] >= 0
    assert terms["loss"] == pytest.approx(
        terms["reconstruction_loss"] + terms["kl_loss"] - terms["importance_gain"], rel=1e-5)


def test_iwae_log_sum_exp_is_stable_for_large_weights():
    log_w = np.array([[-1e4, -1e4 + 1.0], [800.0, 799.0]], np.float32)
    terms = objectives.iwae_terms(log_w, log_w, [np.zeros_like(log_w)], 1.0, 0.0)
    expected = np.mean([np.logaddexp(-1e4, -1e4 + 1) - math.log(2),
                        np.logaddexp(800, 799) - math.log(2)])
    assert np.isfinite(float(to_np(terms["loss"])))
    assert float(to_np(terms["iwae_bound"])) == pytest.approx(expected, rel=1e-6)


# ---------------------------------------------------------- the model's loss


def _tiny_vae(objective, likelihood="gaussian", free_bits=0.0, kl_scale=None, pixels=12):
    keras.utils.set_random_seed(0)
    scale = kl_scale or likelihoods.get(likelihood).natural_kl_scale(pixels)
    return compile_vae(build_vae(pixels, 8, 3, scale, seed=0, likelihood=likelihood,
                                 objective=objective, free_bits=free_bits))


@pytest.mark.parametrize("likelihood", ["gaussian", "bernoulli"])
def test_model_iwae_loss_is_the_formula_on_its_own_noise(likelihood):
    """VAEModel's iwae:K loss equals the bound computed here from the encoder, the decoder
    and the same draws (the sampling layer's noise, replaced by fixed draws)."""
    pixels, k = 12, 4
    vae = _tiny_vae(f"iwae:{k}", likelihood, pixels=pixels)
    rng = np.random.default_rng(5)
    x = (rng.random((5, pixels)) < 0.5).astype(np.float32)
    eps = rng.standard_normal((5, k, 3)).astype(np.float32)
    y_pred = vae.model(x)
    vae.sampling.noise = lambda shape, dtype="float32": ops.convert_to_tensor(eps)
    loss = float(to_np(vae.model.compute_loss(x, x, y_pred)))

    mean, log_var = (to_np(a) for a in vae.encoder(x))
    z = mean[:, None] + np.exp(0.5 * log_var[:, None]) * eps                    # (5, k, 3)
    decoded = to_np(vae.decoder(z.reshape(-1, 3).astype(np.float32))).reshape(5, k, pixels)
    scale = vae.sampling.kl_scale
    if likelihood == "gaussian":
        variance = pixels * scale / 2
        log_px = (-0.5 * np.sum((x[:, None] - decoded) ** 2, -1) / variance
                  - 0.5 * pixels * math.log(2 * math.pi * variance))
        normalizer = 0.5 * pixels * math.log(2 * math.pi * variance)
    else:
        log_px = np.sum(x[:, None] * decoded - np.logaddexp(0, decoded), -1)
        normalizer = 0.0
    log_pz = -0.5 * np.sum(math.log(2 * math.pi) + z**2, -1)
    log_qz = -0.5 * np.sum(math.log(2 * math.pi) + log_var[:, None] + eps**2, -1)
    bound = np.mean(np.logaddexp.reduce(log_px + log_pz - log_qz, axis=1) - math.log(k))
    assert loss == pytest.approx(scale * (-bound - normalizer), rel=1e-5)


def test_iwae_training_history_parts_add_up_and_the_model_round_trips(tmp_path):
    vae = _tiny_vae("iwae:5")
    x = np.random.default_rng(6).random((40, 12)).astype(np.float32)
    history = vae.model.fit(x, epochs=2, batch_size=8, verbose=0).history
    assert set(history) == {"loss", "reconstruction_loss", "kl_loss", "importance_gain",
                            "iwae_bound"}
    for epoch in range(2):
        assert history["importance_gain"][epoch] > 0
        assert history["loss"][epoch] == pytest.approx(
            history["reconstruction_loss"][epoch] + history["kl_loss"][epoch]
            - history["importance_gain"][epoch], rel=1e-5)
    path = tmp_path / "m.keras"
    vae.model.save(path)
    loaded = VAE.from_model(keras.saving.load_model(path))
    assert loaded.model.objective.name == "iwae:5"
    np.testing.assert_allclose(to_np(loaded.decoder(np.zeros((1, 3), np.float32))),
                               to_np(vae.decoder(np.zeros((1, 3), np.float32))))


# ------------------------------------------------------------- free bits, β


def _added_kl(layer, mean, log_var):
    trainable = [ops.copy(v.value) for v in layer.trainable_variables]
    non_trainable = [ops.copy(v.value) for v in layer.non_trainable_variables]
    inputs = [ops.convert_to_tensor(mean), ops.convert_to_tensor(log_var)]
    _, _, losses = layer.stateless_call(trainable, non_trainable, inputs, return_losses=True)
    return losses[0]


def test_free_bits_value_and_gradients():
    """max(λ, KL_d) per dimension: dimensions above λ keep the plain KL's value and
    gradient; those below cost λ and get no gradient."""
    rng = np.random.default_rng(7)
    mean = rng.normal(0, 1, (6, 4)).astype(np.float32)
    mean[:, 2:] *= 0.05                                      # dims 2, 3: tiny KL
    log_var = rng.normal(0, 0.1, (6, 4)).astype(np.float32)
    log_var[:, :2] -= 1.0                                    # dims 0, 1: large KL
    free, plain = Sampling(kl_scale=0.5, seed=0, free_bits=0.3), Sampling(kl_scale=0.5, seed=0)
    for layer in (free, plain):
        layer([mean, log_var])
    per_dim = np.mean(-0.5 * (1 + log_var - mean**2 - np.exp(log_var)), 0)
    assert np.all(per_dim[:2] > 0.3) and np.all(per_dim[2:] < 0.3)
    value = float(to_np(_added_kl(free, mean, log_var)))
    assert value == pytest.approx(0.5 * np.sum(np.maximum(per_dim, 0.3)), rel=1e-5)

    got = jacobians(lambda m, v: _added_kl(free, m, v), mean, log_var)
    want = jacobians(lambda m, v: _added_kl(plain, m, v), mean, log_var)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g[:, :2], w[:, :2], rtol=1e-5, atol=1e-7)
        assert np.all(g[:, 2:] == 0)
        assert np.any(w[:, 2:] != 0)


def test_free_bits_zero_is_the_plain_kl_bit_for_bit():
    rng = np.random.default_rng(8)
    mean, log_var = (rng.normal(size=(5, 3)).astype(np.float32) for _ in range(2))
    plain, zero = Sampling(kl_scale=0.2, seed=0), Sampling(kl_scale=0.2, seed=0, free_bits=0)
    for layer in (plain, zero):
        layer([mean, log_var])
    assert to_np(_added_kl(zero, mean, log_var)) == to_np(_added_kl(plain, mean, log_var))


@pytest.mark.parametrize("beta", [2.0, 0.3])
def test_beta_scales_the_kl_gradient_exactly(beta):
    config = TrainConfig(beta=beta)
    base = TrainConfig()
    assert config.effective_kl_scale(784) == pytest.approx(beta / 784)
    rng = np.random.default_rng(9)
    mean, log_var = (rng.normal(size=(4, 3)).astype(np.float32) for _ in range(2))
    scaled = Sampling(kl_scale=config.effective_kl_scale(784), seed=0)
    plain = Sampling(kl_scale=base.effective_kl_scale(784), seed=0)
    for layer in (scaled, plain):
        layer([mean, log_var])
    got = jacobians(lambda m, v: _added_kl(scaled, m, v), mean, log_var)
    want = jacobians(lambda m, v: _added_kl(plain, m, v), mean, log_var)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, beta * w, rtol=1e-6)


def test_beta_multiplies_an_explicit_kl_scale_and_sets_the_gaussian_variance():
    assert TrainConfig(beta=0.5, kl_scale=1.0).effective_kl_scale(784) == 0.5
    assert TrainConfig(beta=0.5, likelihood="bernoulli").effective_kl_scale(784) == 0.5
    assert TrainConfig(beta=4.0).decoder_variance(784) == pytest.approx(2.0)


# ----------------------------------------------------------------- refusals


@pytest.mark.parametrize("change, message", [
    (dict(beta=0), r"^--beta must be a positive finite number .*received 0"),
    (dict(beta=-1.0), r"^--beta must be .*received -1.0"),
    (dict(beta=float("nan")), r"^--beta must be .*received nan"),
    (dict(beta=float("inf")), r"^--beta must be .*received inf"),
    (dict(free_bits=-0.1), r"^--free-bits must be a non-negative .*received -0.1"),
    (dict(free_bits=float("nan")), r"^--free-bits must be .*received nan"),
    (dict(free_bits=float("inf")), r"^--free-bits must be .*received inf"),
    (dict(objective="iwae:0"), r"^--objective must be elbo or iwae:K"),
    (dict(objective="iwae:5", free_bits=0.5), r"^--objective iwae:5 cannot be combined with --free-bits"),
    (dict(objective="iwae:5", anneal="1:2"), r"^--objective iwae:5 cannot be combined with --anneal"),
    (dict(objective="iwae:5", schedule="cyclical:2:0.5"), r"cannot be combined with --anneal or --schedule"),
    (dict(objective="iwae:5", beta=0.5), r"^--objective iwae:5 needs --beta 1"),
    (dict(objective="iwae:5", likelihood="bernoulli", kl_scale=0.5),
     r"^--objective iwae:5 with the bernoulli likelihood needs --kl-scale 1, received 0.5"),
])
def test_config_refuses_undefined_objectives(change, message):
    with pytest.raises(UsageError, match=message):
        TrainConfig(**change)


def test_config_records_objectives():
    config = TrainConfig(objective="iwae:5", likelihood="bernoulli", kl_scale=1)
    assert (config.objective, config.beta, config.free_bits) == ("iwae:5", 1.0, 0.0)
    assert TrainConfig.from_dict(config.to_dict()) == config


# ------------------------------------------- Burda et al.'s learning rate and Adam's ε


def test_burda_learning_rate_stages():
    from vaelab.core.schedules import burda_learning_rate

    ends = np.cumsum([3**i for i in range(8)])                  # 1, 4, 13, … 3 280
    assert ends[-1] == 3280
    for stage, end in enumerate(ends):
        first = 0 if stage == 0 else int(ends[stage - 1])
        for epoch in (first, int(end) - 1):
            assert burda_learning_rate(epoch, 1e-3) == pytest.approx(1e-3 * 10 ** (-stage / 7))
    assert burda_learning_rate(5000, 2e-3) == pytest.approx(2e-4)


def test_burda_schedule_and_adam_epsilon_reach_the_compiled_step(tmp_path):
    """The rate changes after the first pass (stage 0 is one pass): the first epochs of a
    scheduled and a constant run agree, the second ones differ; ε is Adam's."""
    from conftest import make_idx_dir

    from vaelab.training.trainer import train

    make_idx_dir(tmp_path / "data", n_train=128, n_test=32)
    common = dict(epochs=2, batch_size=16, hidden_dim=8, latent_dim=2,
                  data_dir=str(tmp_path / "data"), adam_epsilon=1e-4)
    train(TrainConfig(lr_schedule="burda", **common), tmp_path / "burda", verbose=False)
    train(TrainConfig(**common), tmp_path / "constant", verbose=False)
    from vaelab.store import runs
    burda = runs.read_history_csv(tmp_path / "burda" / "history.csv")
    constant = runs.read_history_csv(tmp_path / "constant" / "history.csv")
    np.testing.assert_allclose(burda["learning_rate"], [1e-3, 1e-3 * 10 ** (-1 / 7)], rtol=1e-6)
    assert burda["loss"][0] == constant["loss"][0]
    assert burda["loss"][1] != constant["loss"][1]
    model = runs.load_model(tmp_path / "burda" / "model.keras")
    assert model.optimizer.epsilon == 1e-4
    saved = runs.read_json(tmp_path / "burda" / "config.json")
    assert (saved["lr_schedule"], saved["adam_epsilon"]) == ("burda", 1e-4)


@pytest.mark.parametrize("change, message", [
    (dict(lr_schedule="cosine"), r"^--lr-schedule must be one of burda, received 'cosine'"),
    (dict(adam_epsilon=0), r"^--adam-epsilon must be a positive finite number, received 0"),
    (dict(adam_epsilon=float("nan")), r"^--adam-epsilon must be .*received nan"),
])
def test_config_refuses_bad_optimizer_settings(change, message):
    with pytest.raises(UsageError, match=message):
        TrainConfig(**change)


def test_conditional_iwae_repeats_each_label_for_its_samples():
    """A conditional VAE's IWAE loss decodes every draw with its own image's label: equal to
    the formula written with the labels repeated K times."""
    from vaelab.core.models.vae import one_hot

    keras.utils.set_random_seed(0)
    pixels, k = 12, 3
    vae = compile_vae(build_vae(pixels, 8, 2, 1 / pixels, seed=0, objective=f"iwae:{k}",
                                classes=3))
    rng = np.random.default_rng(10)
    x = rng.random((4, pixels)).astype(np.float32)
    labels = one_hot([0, 1, 2, 1], 3)
    eps = rng.standard_normal((4, k, 2)).astype(np.float32)
    y_pred = vae.model([x, labels])
    vae.sampling.noise = lambda shape, dtype="float32": ops.convert_to_tensor(eps)
    loss = float(to_np(vae.model.compute_loss([x, labels], x, y_pred)))

    mean, log_var = (to_np(a) for a in vae.encoder([x, labels]))
    z = (mean[:, None] + np.exp(0.5 * log_var[:, None]) * eps).reshape(-1, 2).astype(np.float32)
    decoded = to_np(vae.decoder([z, np.repeat(labels, k, axis=0)])).reshape(4, k, pixels)
    variance = pixels * (1 / pixels) / 2
    log_px = -0.5 * np.sum((x[:, None] - decoded) ** 2, -1) / variance
    zs = z.reshape(4, k, 2)
    log_ratio = (-0.5 * np.sum(zs**2, -1)) - (-0.5 * np.sum(log_var[:, None] + eps**2, -1))
    bound = np.mean(np.logaddexp.reduce(log_px + log_ratio, axis=1) - math.log(k))
    assert loss == pytest.approx(-bound / pixels, rel=1e-5)
    other = float(to_np(vae.model.compute_loss([x, one_hot([2, 2, 0, 0], 3)], x, y_pred)))
    assert other != loss


def test_unicode_digits_are_not_a_sample_count():
    with pytest.raises(ValueError, match=r"^--objective must be elbo or iwae:K .*'iwae:²'"):
        objectives.parse("iwae:²")


def test_the_python_api_refuses_what_the_iwae_bound_cannot_mean():
    with pytest.raises(ValueError, match=r"iwae:5 objective with the bernoulli likelihood "
                                         r"needs kl_scale 1, received 0.5"):
        build_vae(12, 8, 3, 0.5, likelihood="bernoulli", objective="iwae:5")
    with pytest.raises(ValueError, match=r"has no KL term for free bits"):
        build_vae(12, 8, 3, 1 / 12, free_bits=0.5, objective="iwae:5")
    vae = build_vae(12, 8, 3, 1 / 12, objective="iwae:2")
    vae.model.compile(optimizer="adam", loss="mse")
    x = np.zeros((4, 12), np.float32)
    with pytest.raises(ValueError, match=r"compile the model without loss="):
        vae.model.compute_loss(x, x, vae.model(x))


def test_every_likelihood_answers_the_one_interface():
    for name in ("gaussian", "bernoulli"):
        assert isinstance(likelihoods.get(name), likelihoods.Likelihood)
    assert likelihoods.get("gaussian").squared_error and not likelihoods.get("bernoulli").squared_error

    class LossOnly(likelihoods.Likelihood):
        name, binarized, kl_scale_sets_variance = "loss-only", False, False

        def loss(self, x, decoded):
            return ops.sum(x - decoded, axis=-1)

    with pytest.raises(TypeError, match="abstract method"):
        LossOnly()

