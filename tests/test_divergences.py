import numpy as np
import pytest
from keras import ops
from conftest import jacobians
from scipy import stats

from vaelab.core.divergences import kl_diagonal_normals, kl_normal, kl_standard_normal

N_MC = 400_000


def np_(x):
    return np.asarray(ops.convert_to_numpy(x), dtype=np.float64)


@pytest.mark.parametrize("mq,sq,mp,sp", [(0.0, 1.0, 0.0, 1.0), (1.0, 0.5, -0.3, 2.0),
                                         (-2.0, 3.0, 1.0, 0.7), (0.4, 0.2, 0.5, 0.25)])
def test_kl_normal_against_monte_carlo(mq, sq, mp, sp):
    rng = np.random.default_rng(0)
    x = rng.normal(mq, sq, N_MC)
    log_ratio = stats.norm.logpdf(x, mq, sq) - stats.norm.logpdf(x, mp, sp)
    estimate, se = log_ratio.mean(), log_ratio.std(ddof=1) / np.sqrt(N_MC)
    exact = float(np_(kl_normal(mq, sq, mp, sp)))
    assert abs(exact - estimate) <= 5 * se + 1e-6


def test_kl_normal_is_the_corrected_lab_formula():
    # The lab's eq. (1) divides by 2σ₁; the correct denominator is 2σ₁² (σ₁ = std of p).
    mq, sq, mp, sp = 0.3, 0.8, -0.5, 2.5
    correct = np.log(sp / sq) + (sq**2 + (mq - mp) ** 2) / (2 * sp**2) - 0.5
    typo = np.log(sp / sq) + (sq**2 + (mq - mp) ** 2) / (2 * sp) - 0.5
    value = float(np_(kl_normal(mq, sq, mp, sp)))
    assert value == pytest.approx(correct, rel=1e-6)
    assert abs(value - typo) > 0.1


def test_kl_normal_identities():
    rng = np.random.default_rng(1)
    m, s = rng.normal(size=(2, 1000)), rng.uniform(0.1, 3, size=(2, 1000))
    np.testing.assert_allclose(np_(kl_normal(m[0], s[0], m[0], s[0])), 0.0, atol=1e-6)
    assert np_(kl_normal(m[0], s[0], m[1], s[1])).min() >= -1e-6
    # Not symmetric in general.
    assert not np.allclose(np_(kl_normal(m[0], s[0], m[1], s[1])),
                           np_(kl_normal(m[1], s[1], m[0], s[0])))


def test_kl_standard_normal_against_monte_carlo():
    rng = np.random.default_rng(2)
    mean, log_var = np.array([[0.5, -1.0, 0.0]]), np.array([[0.3, -1.2, 1.0]])
    std = np.exp(log_var / 2)
    z = rng.normal(mean, std, size=(N_MC, 3))
    log_q = stats.norm.logpdf(z, mean, std).sum(-1)
    log_p = stats.norm.logpdf(z).sum(-1)
    ratio = log_q - log_p
    estimate, se = ratio.mean(), ratio.std(ddof=1) / np.sqrt(N_MC)
    exact = np_(kl_standard_normal(mean, log_var))
    assert exact.shape == (1,)
    assert abs(exact[0] - estimate) <= 5 * se


def test_kl_diagonal_normals_against_monte_carlo():
    rng = np.random.default_rng(3)
    mq, lq = np.array([[0.2, -0.4]]), np.array([[-0.5, 0.4]])
    mp, lp = np.array([[1.0, 0.1]]), np.array([[0.3, -0.2]])
    z = rng.normal(mq, np.exp(lq / 2), size=(N_MC, 2))
    ratio = (stats.norm.logpdf(z, mq, np.exp(lq / 2)).sum(-1)
             - stats.norm.logpdf(z, mp, np.exp(lp / 2)).sum(-1))
    estimate, se = ratio.mean(), ratio.std(ddof=1) / np.sqrt(N_MC)
    assert abs(np_(kl_diagonal_normals(mq, lq, mp, lp))[0] - estimate) <= 5 * se


def test_multivariate_identities():
    rng = np.random.default_rng(4)
    mean, log_var = rng.normal(size=(50, 8)), rng.normal(size=(50, 8))
    mean_p, log_var_p = rng.normal(size=(50, 8)), rng.normal(size=(50, 8))
    zeros = np.zeros_like(mean)
    kl = np_(kl_standard_normal(mean, log_var))
    assert kl.shape == (50,) and kl.min() >= 0
    # Equals the general diagonal KL with p = N(0, I).
    np.testing.assert_allclose(kl, np_(kl_diagonal_normals(mean, log_var, zeros, zeros)), rtol=1e-5)
    # Equals the sum of univariate KLs over dimensions.
    univariate = np_(kl_normal(mean, np.exp(log_var / 2), mean_p, np.exp(log_var_p / 2)))
    np.testing.assert_allclose(np_(kl_diagonal_normals(mean, log_var, mean_p, log_var_p)),
                               univariate.sum(-1), rtol=1e-4)
    # KL(q || q) = 0.
    np.testing.assert_allclose(np_(kl_diagonal_normals(mean, log_var, mean, log_var)), 0, atol=1e-5)
    np.testing.assert_allclose(np_(kl_standard_normal(zeros, zeros)), 0, atol=1e-7)


def test_shape_mismatch_fails_instead_of_broadcasting():
    with pytest.raises(ValueError, match=r"same shape.*mean\(4, 3\), log_var\(4, 1\)"):
        kl_standard_normal(np.zeros((4, 3)), np.zeros((4, 1)))
    with pytest.raises(ValueError, match="same shape"):
        kl_diagonal_normals(np.zeros((4, 3)), np.zeros((4, 3)), np.zeros((3,)), np.zeros((4, 3)))


# ---------------------------------------------------------------- gradients


def central_differences(fn, x, h):
    """∂fn(x)/∂x by (fn(x + h) − fn(x − h)) / 2h, one element at a time, in float64:
    shape ``out.shape + x.shape``."""
    columns = []
    for index in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[index] = h
        columns.append((np_(fn(x + step)) - np_(fn(x - step))) / (2 * h))
    return np.stack(columns, axis=-1).reshape(columns[0].shape + x.shape)


@pytest.mark.parametrize("batch,latent", [(4, 1), (3, 5), (2, 16)])
def test_kl_standard_normal_gradients_match_the_closed_form(batch, latent):
    """∂KL_b/∂μ_bi = μ_bi and ∂KL_b/∂log σ²_bi = ½(σ²_bi − 1); example b's KL does not
    depend on another example's inputs. Checked against autodiff and central differences."""
    rng = np.random.default_rng(10 + latent)
    mean = rng.normal(0, 1.5, (batch, latent)).astype(np.float32)
    log_var = rng.normal(0, 1.0, (batch, latent)).astype(np.float32)
    own = np.eye(batch)[:, :, None]                                    # (B, B, 1): b == b'
    expected_mean = own * mean.astype(np.float64)[None]                # (B, B, L)
    expected_log_var = own * 0.5 * (np.exp(log_var.astype(np.float64)) - 1)[None]

    d_mean, d_log_var = jacobians(kl_standard_normal, mean, log_var)
    assert d_mean.shape == d_log_var.shape == (batch, batch, latent)
    np.testing.assert_allclose(d_mean, expected_mean, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(d_log_var, expected_log_var, rtol=1e-5, atol=1e-6)

    # Second reference: central differences of the function itself, h = 1e-2. Truncation is
    # 0 for μ (the KL is quadratic in it) and h²/6 · ½σ² ≤ 1.7e-4 for log σ² (σ² ≤ 20 here);
    # rounding of float32 KLs up to 41 nats (JAX) adds ~1e-4. Largest errors measured
    # against the closed form: 1.6e-4 (μ) and 1.5e-4 (log σ²) under JAX, 3e-13 and 1.9e-4
    # under torch (float64 inside).
    h = 1e-2
    fd_mean = central_differences(lambda m: kl_standard_normal(m, log_var), mean.astype(np.float64), h)
    fd_log_var = central_differences(lambda v: kl_standard_normal(mean, v), log_var.astype(np.float64), h)
    np.testing.assert_allclose(fd_mean, expected_mean, atol=5e-4)
    np.testing.assert_allclose(fd_log_var, expected_log_var, atol=5e-4)
    np.testing.assert_allclose(d_mean, fd_mean, atol=5e-4)
    np.testing.assert_allclose(d_log_var, fd_log_var, atol=5e-4)
