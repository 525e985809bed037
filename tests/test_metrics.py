import numpy as np
import pytest

from vaelab.analysis import bounds, metrics
def test_active_units_counts_dimensions_by_variance():
    rng = np.random.default_rng(0)
    means = np.column_stack([rng.normal(0, 1, 5000), rng.normal(0, 0.05, 5000),
                             np.full(5000, 3.0), rng.normal(0, 0.2, 5000)])
    # variances ≈ 1, 0.0025, 0, 0.04
    assert metrics.active_units(means) == 2
    assert metrics.active_units(means, threshold=0.001) == 3
    with pytest.raises(ValueError, match=r"received shape \(3,\)"):
        metrics.active_units(np.zeros(3))


def test_kl_per_dimension_sums_to_the_mean_kl():
    rng = np.random.default_rng(1)
    means, log_vars = rng.normal(size=(100, 6)), rng.normal(size=(100, 6))
    per_dim = metrics.kl_per_dimension(means, log_vars)
    per_example = -0.5 * np.sum(1 + log_vars - means**2 - np.exp(log_vars), axis=1)
    assert per_dim.shape == (6,) and np.all(per_dim >= 0)
    assert per_dim.sum() == pytest.approx(per_example.mean())
    np.testing.assert_allclose(metrics.kl_per_dimension(np.zeros((3, 2)), np.zeros((3, 2))), 0)
    with pytest.raises(ValueError, match="same shape"):
        metrics.kl_per_dimension(np.zeros((3, 2)), np.zeros((3, 1)))


def test_output_std_and_collapse_verdict():
    same = np.tile(np.linspace(0, 1, 784), (50, 1))
    assert metrics.output_std(same) == pytest.approx(0.0, abs=1e-12)
    rng = np.random.default_rng(2)
    varied = rng.random((2000, 784))
    assert metrics.output_std(varied) == pytest.approx(np.sqrt(1 / 12), rel=0.02)
    assert metrics.is_collapsed(0, 0.2) and metrics.is_collapsed(5, 0.005)
    assert not metrics.is_collapsed(5, 0.2)


# ---------------------------------------------------------------- likelihood bounds

import keras  # noqa: E402
from scipy import stats  # noqa: E402

from vaelab import Sampling, assemble  # noqa: E402

D, L, SIGMA2 = 5, 2, 0.3


def linear_gaussian_vae(perturb=0.3, seed=0):
    """Decoder x = W z + b (+ N(0, σ²I) noise); encoder = the exact posterior, perturbed.

    The exact marginal is x ~ N(b, W Wᵀ + σ² I). The posterior is the diagonal
    N(S Wᵀ (x − b) / σ², S) with S = (I + WᵀW / σ²)⁻¹; shifting its mean and inflating
    its variance keeps the ELBO strictly below log p(x).
    """
    rng = np.random.default_rng(seed)
    # Orthogonal columns make WᵀW, hence the posterior covariance, diagonal.
    W = np.linalg.qr(rng.normal(size=(D, L)))[0] * [2.0, 0.7]
    b = rng.normal(size=D)
    S = np.linalg.inv(np.eye(L) + W.T @ W / SIGMA2)
    A = (S @ W.T / SIGMA2).T                                           # (D, L): mean = (x − b) A
    x_in = keras.Input((D,))
    mean = keras.layers.Dense(L)(x_in)
    log_var = keras.layers.Dense(L)(x_in)
    encoder = keras.Model(x_in, [mean, log_var])
    encoder.layers[1].set_weights([A, -b @ A + perturb])
    encoder.layers[2].set_weights([np.zeros((D, L)), np.log(np.diag(S)) + 2 * perturb])
    z_in = keras.Input((L,))
    decoder = keras.Model(z_in, keras.layers.Dense(D)(z_in))
    decoder.layers[1].set_weights([W.T, b])
    marginal = stats.multivariate_normal(b, W @ W.T + SIGMA2 * np.eye(D))
    x = marginal.rvs(size=300, random_state=seed).astype(np.float32)
    return assemble(encoder, Sampling(), decoder), x, marginal


def test_iwae_approaches_the_exact_likelihood_and_elbo_lies_below():
    vae, x, marginal = linear_gaussian_vae()
    exact_nll = float(-marginal.logpdf(x).mean())
    nll, se, k = bounds.iwae_nll(vae, x, k=2000, variance=SIGMA2, seed=1)
    assert k == 2000
    assert abs(nll - exact_nll) <= 3 * se + 0.01
    elbo, elbo_se = bounds.elbo(vae, x, variance=SIGMA2, samples=20, seed=1)
    assert -elbo > exact_nll + 0.05  # strictly looser: the posterior is perturbed
    nll_1, _, _ = bounds.iwae_nll(vae, x, k=1, variance=SIGMA2, seed=1)
    assert nll_1 == pytest.approx(-elbo, abs=5 * elbo_se + 0.05)


def test_iwae_with_the_exact_posterior_is_exact_for_any_k():
    vae, x, marginal = linear_gaussian_vae(perturb=0.0)
    nll, _, _ = bounds.iwae_nll(vae, x[:50], k=3, variance=SIGMA2)
    assert nll == pytest.approx(float(-marginal.logpdf(x[:50]).mean()), abs=1e-3)


def test_iwae_bound_tightens_with_k():
    vae, x, _ = linear_gaussian_vae(perturb=0.6)
    values = [bounds.iwae_nll(vae, x, k=k, variance=SIGMA2, seed=2)[0] for k in (1, 10, 100)]
    assert values[0] > values[1] > values[2]


def test_iwae_uses_exactly_k_samples_whatever_the_chunking(monkeypatch):
    vae, x, _ = linear_gaussian_vae()
    seen = []
    original = bounds.iwae_log_weights_chunks

    def counting(*args, **kwargs):
        for log_w in original(*args, **kwargs):
            seen.append(log_w.shape)
            yield log_w

    monkeypatch.setattr(bounds, "iwae_log_weights_chunks", counting)
    _, _, k = bounds.iwae_nll(vae, x[:30], k=37, variance=SIGMA2, batch_size=30, max_rows=300)
    assert k == 37
    assert [s[0] for s in seen] == [10, 10, 10, 7] and all(s[1] == 30 for s in seen)
    with pytest.raises(ValueError, match="k must be a positive integer, received 0"):
        bounds.iwae_nll(vae, x, k=0)


def test_log_likelihood_against_scipy():
    rng = np.random.default_rng(3)
    x, mu = rng.random((4, 6)), rng.normal(size=(4, 6))
    expected = stats.norm.logpdf(x, mu, np.sqrt(0.7)).sum(-1)
    np.testing.assert_allclose(bounds.log_likelihood(x, mu, "gaussian", 0.7), expected)
    xb = (x > 0.5).astype(float)
    expected = stats.bernoulli.logpmf(xb, 1 / (1 + np.exp(-mu))).sum(-1)
    np.testing.assert_allclose(bounds.log_likelihood(xb, mu, "bernoulli"), expected, rtol=1e-10)
    with pytest.raises(ValueError, match="received 'poisson'"):
        bounds.log_likelihood(x, mu, "poisson")


def test_mutual_information_zero_when_the_encoder_ignores_x():
    x_in = keras.Input((3,))
    mean = keras.layers.Dense(2, kernel_initializer="zeros", bias_initializer="ones")(x_in)
    encoder = keras.Model(x_in, [mean, mean])  # log_var = 1 everywhere, mean = 1
    x = np.random.default_rng(0).random((500, 3)).astype(np.float32)
    assert abs(metrics.mutual_information(encoder, x)) < 1e-9


def exact_mutual_information(marginal):
    """I(x; z) of the linear-Gaussian model, whose aggregate posterior is the prior N(0, I):

    I = H(x) − H(x | z) = ½ log det(W Wᵀ + σ² I) − ½ D log σ² = −½ log det S,
    the last form being H(z) − H(z | x) with the posterior covariance S.
    """
    return 0.5 * (np.linalg.slogdet(marginal.cov)[1] - D * np.log(SIGMA2))


def test_mutual_information_positive_and_bounded_for_an_informative_encoder():
    vae, x, marginal = linear_gaussian_vae(perturb=0.0)
    mi = metrics.mutual_information(vae.encoder, x)
    assert 0.5 < mi <= np.log(len(x))
    # Closed form 1.8154 nats. Over 400 draws of 300 images and noise the estimate erred by
    # −0.026 ± 0.004 on average (bias ≈ −8/N) with a spread of 0.072 (≈ 1.25/√N), at most 0.22.
    assert mi == pytest.approx(exact_mutual_information(marginal), abs=0.3)


def test_mutual_information_matches_the_closed_form_of_the_exact_posterior():
    """Two-output encoder [mean, log_var] on 4000 images drawn from the model."""
    vae, _, marginal = linear_gaussian_vae(perturb=0.0)
    encoder = keras.Model(vae.encoder.inputs, vae.encoder.outputs[:2])
    x = marginal.rvs(size=4000, random_state=7).astype(np.float32)
    exact = exact_mutual_information(marginal)
    # The encoder is the exact posterior: −½ Σ log σ² is the same number.
    log_var = np.asarray(encoder.predict(x[:1], verbose=0)[1], np.float64)
    assert exact == pytest.approx(-0.5 * log_var.sum(), abs=1e-5)
    assert exact == pytest.approx(1.8154, abs=1e-4)
    mi = metrics.mutual_information(encoder, x, seed=3)
    # Measured over 40 draws of 4000 images and noise: error −0.0045 ± 0.003 on average
    # (bias ≈ −8/N: −7.7 ± 1.1 nats/N at N = 300, −8.7 ± 2.8 at N = 1000), spread 0.020
    # (1.25/√N at N = 300, 1000 and 4000), largest 0.044. Tolerance: 4 spreads.
    assert mi == pytest.approx(exact, abs=0.08)


@pytest.mark.parametrize("likelihood", ["gaussian", "bernoulli"])
def test_log_weights_match_a_float64_numpy_reference(likelihood):
    """The compiled log w (with the expanded square for the Gaussian, and without it)
    against log p(x|z) + log p(z) − log q(z|x) computed in float64 from the decoder."""
    from vaelab.core.models import build_vae

    vae = build_vae(input_dim=784, hidden_dim=64, latent_dim=4, seed=3)
    rng = np.random.default_rng(4)
    x = rng.random((6, 784)).astype(np.float32)
    if likelihood == "bernoulli":
        x = (x > 0.5).astype(np.float32)
    mean = rng.normal(0, 0.5, (6, 4)).astype(np.float32)
    log_var = rng.normal(-1, 0.3, (6, 4)).astype(np.float32)
    eps = rng.standard_normal((6, 7, 4)).astype(np.float32)                       # (B, S, L)
    z = mean[:, None] + np.exp(0.5 * log_var[:, None]) * eps
    decoded = np.asarray(vae.decoder.predict(z.reshape(42, 4), verbose=0), np.float64)
    expected = (bounds.log_likelihood(x[:, None], decoded.reshape(6, 7, 784), likelihood, 0.5)
                + metrics.log_normal(z, 0.0, 0.0)
                - metrics.log_normal(z, mean[:, None], log_var[:, None]))         # (B, S)
    for expand in (True, False):
        model = bounds._log_weight_model(vae, likelihood, 0.5, expand_square=expand)
        log_w = np.asarray(model.predict_on_batch([x, mean, log_var, eps]))
        assert log_w.shape == (6, 7)
        np.testing.assert_allclose(log_w, expected, rtol=1e-5, atol=2e-3)
    assert bounds._linear_tail(vae.decoder) is not None
