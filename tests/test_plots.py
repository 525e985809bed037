import numpy as np
import pytest

from vaelab.analysis import plots
def test_pca_2d_recovers_the_leading_directions():
    rng = np.random.default_rng(0)
    latent = rng.normal(size=(2000, 2)) * [5.0, 2.0]
    rotation = np.linalg.qr(rng.normal(size=(6, 6)))[0][:, :2]
    points = latent @ rotation.T + rng.normal(scale=0.01, size=(2000, 6)) + 3.0
    xy = plots.pca_2d(points)
    assert xy.shape == (2000, 2)
    assert np.allclose(xy.mean(0), 0, atol=1e-9)
    assert xy[:, 0].std() == pytest.approx(5.0, rel=0.05)
    assert xy[:, 1].std() == pytest.approx(2.0, rel=0.05)


def test_image_helpers_reject_non_square(tmp_path):
    with pytest.raises(ValueError, match="expected square images, received 10 pixels"):
        plots.image_grid(np.zeros((2, 10)), tmp_path / "g.png")


def test_latent_scatter_colours_labels_above_nine(tmp_path):
    """Twenty classes get tab20, more a continuous map; the figure is written either way."""
    rng = np.random.default_rng(0)
    for classes in (20, 40):
        path = tmp_path / f"latent-{classes}.png"
        plots.latent_scatter(rng.normal(size=(200, 3)), rng.integers(0, classes, 200), path)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
