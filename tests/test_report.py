import numpy as np

from vaelab.report import _baseline, _describe


def run(name, kl_scale, anneal, active, collapsed, weights=None, units=None):
    epochs = len(weights) if weights else 2
    history = {"epoch": np.arange(1, epochs + 1, dtype=float),
               "kl_weight": np.array(weights or [1.0] * epochs),
               "active_units": np.array(units or [active] * epochs, dtype=float)}
    return {"name": name, "title": name, "history": history,
            "config": {"kl_scale": kl_scale, "anneal": anneal, "schedule": None, "latent_dim": 32},
            "metrics": {"epochs": epochs, "test_mse": 0.02, "test_kl": 3.0, "active_units": active,
                        "output_std": 0.0 if collapsed else 0.1, "collapsed": collapsed},
            "image": {"original": np.zeros(4), "reconstruction": np.full(4, 0.5)}}


def test_sentences_follow_the_numbers():
    plain_unscaled = run("plain", 1.0, None, 0, True)
    delayed = run("delayed", 1.0, "2:2", 0, True, weights=[0, 0, 0.5, 1], units=[30, 31, 0, 0])
    text = _describe(delayed, _baseline(delayed, [plain_unscaled, delayed]))
    assert "up to 31 units were active" in text
    assert "from epoch 3 (KL weight 0.5), so annealing only delayed the collapse" in text
    assert "Training image 1 is reconstructed with MSE 0.2500" in text

    prevented = run("prevented", 1.0, "2:2", 12, False, weights=[0, 0, 0.5, 1], units=[32, 32, 20, 12])
    text = _describe(prevented, _baseline(prevented, [plain_unscaled, prevented]))
    assert "while the same model without annealing collapsed: annealing prevented the collapse" in text

    never = run("never", 1.0, "2:2", 0, True, weights=[0, 0, 0.5, 1], units=[0, 0, 0, 0])
    assert "annealing did not prevent the collapse" in _describe(never, None)

    healthy = run("healthy", 1 / 784, "2:2", 14, False, weights=[0, 0, 0.5, 1])
    plain = run("plain784", 1 / 784, None, 15, False)
    text = _describe(healthy, _baseline(healthy, [plain, healthy]))
    assert "scaled by 1/784" in text and "without annealing did not collapse either" in text
