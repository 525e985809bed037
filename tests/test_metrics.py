import numpy as np
import pytest

from vaelab import metrics


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
