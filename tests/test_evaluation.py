import json

import numpy as np
import pytest
from conftest import make_idx_dir
from scipy import stats
from scipy.special import logsumexp

from vaelab import cli
from vaelab.analysis.evaluation import evaluate
from vaelab.core.config import TrainConfig, UsageError
from vaelab.store import runs
from vaelab.training.trainer import train

SMALL = dict(epochs=2, batch_size=32, hidden_dim=32, latent_dim=4, train_size=256, test_size=64)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    make_idx_dir(folder, n_train=256, n_test=64)
    return folder


@pytest.fixture(scope="module", params=["gaussian", "bernoulli"])
def finished_run(request, tmp_path_factory, data_dir):
    run = tmp_path_factory.mktemp(request.param) / "run"
    config = TrainConfig(**SMALL, likelihood=request.param, data_dir=str(data_dir))
    train(config, run, verbose=False)
    return run, config


def test_evaluation_json(finished_run):
    run, config = finished_run
    values = evaluate(run, k=20, verbose=False)
    assert json.loads((run / "evaluation.json").read_text()) == values
    assert values["k"] == 20 and values["test_images"] == 64
    assert values["likelihood"] == config.likelihood
    assert len(values["kl_per_dimension"]) == 4
    assert values["kl"] == pytest.approx(sum(values["kl_per_dimension"]))
    assert values["kl"] == pytest.approx(runs.read_json(run / "metrics.json")["test_kl"], rel=1e-4)
    # The IWAE bound is tighter than the ELBO (up to Monte-Carlo error).
    assert values["iwae_nll"] <= -values["elbo"] + 3 * values["elbo_se"]
    assert -0.05 <= values["mutual_information"] <= np.log(64)
    # The same estimate from scipy: one z per image from default_rng(seed), log q(z) a
    # log-mean-exp over all images (measured agreement 5e-8 gaussian, 3e-7 bernoulli).
    full = runs.load_run_data(run, config)
    x = full.select(None, config.test_size, config.model_likelihood).x_test  # as evaluated
    means, log_vars = (np.asarray(a, np.float64) for a in runs.load_vae(run).encode(x))
    std = np.exp(0.5 * log_vars)
    z = means + std * np.random.default_rng(0).standard_normal(means.shape)
    log_q = stats.norm.logpdf(z[:, None], means[None], std[None]).sum(-1)     # (N, N)
    expected = np.mean(np.diag(log_q) - logsumexp(log_q, axis=1) + np.log(len(z)))
    assert values["mutual_information"] == pytest.approx(expected, rel=1e-5)
    # What evaluation.json records about how it was made.
    assert values["seed"] == 0 and values["data"] == runs.read_json(run / "config.json")["data"]
    if config.likelihood == "gaussian":
        assert values["decoder_variance"] == pytest.approx(784 / 784 / 2)
    else:
        assert values["decoder_variance"] is None and values["iwae_nll"] > 0
        # Summed over 784 pixels the cross-entropy is hundreds of nats, not a per-pixel mean.
        assert runs.read_history_csv(run / "history.csv")["reconstruction_loss"][0] > 50
        assert runs.read_json(run / "config.json")["kl_scale"] == 1.0


def test_evaluate_refusals(tmp_path, finished_run, capsys):
    run, _ = finished_run
    assert cli.main(["evaluate", str(tmp_path / "missing"), "--quiet"]) == 2
    assert "does not exist" in capsys.readouterr().err
    incomplete = tmp_path / "incomplete"
    incomplete.mkdir()
    (incomplete / "config.json").write_text((run / "config.json").read_text())
    assert cli.main(["evaluate", str(incomplete), "--quiet"]) == 2
    assert "is an incomplete run" in capsys.readouterr().err
    assert cli.main(["evaluate", str(run), "--k", "0", "--quiet"]) == 2
    assert "--k must be a positive integer, received 0" in capsys.readouterr().err
    other = tmp_path / "small-images"
    make_idx_dir(other, side=20)
    with pytest.raises(UsageError, match="expects 784 pixels per image, the data has 400"):
        evaluate(run, k=2, data_dir=str(other), verbose=False)


def test_collapse_monitor_warns_once_on_collapse_only(tmp_path, data_dir, capsys):
    # An enormous KL weight forces every posterior onto the prior.
    collapse = {**SMALL, "epochs": 5, "learning_rate": 0.01}
    train(TrainConfig(**collapse, kl_scale=1000.0, data_dir=str(data_dir)), tmp_path / "c")
    err = capsys.readouterr().err
    assert err.count("no active latent unit") == 1
    assert ": no active latent unit on the held-out batch (posterior collapse)" in err
    train(TrainConfig(**SMALL, kl_scale=1e-6, data_dir=str(data_dir)), tmp_path / "h")
    assert "no active latent unit" not in capsys.readouterr().err


@pytest.mark.parametrize("latent", [
    dict(latent_dim=(4, 2), hidden_dim=((32,), (8,)), likelihood="bernoulli"),
    dict(prior="vamp:5", posterior="iaf:2:context", likelihood="gaussian")])
def test_evaluation_of_richer_latent_models(tmp_path, data_dir, latent):
    """Per-layer KL and active units that add up; the ELBO below −NLL; metrics.json agrees."""
    run = tmp_path / "run"
    train(TrainConfig(**{**SMALL, **latent}, data_dir=str(data_dir)), run, verbose=False)
    values = evaluate(run, k=50, verbose=False)
    layers = values["layers"]
    assert [layer["latent"] for layer in layers] == ([4, 2] if "prior" not in latent else [4])
    assert values["kl"] == pytest.approx(sum(layer["kl"] for layer in layers))
    assert values["active_units"] == sum(layer["active_units"] for layer in layers)
    assert values["elbo"] < -values["iwae_nll"]
    assert values["k"] == 50 and values["layer_samples"] == 100
    if "prior" in latent:  # a flow and a mixture: no KL per dimension, no Gaussian MI
        assert layers[0]["kl_per_dimension"] is None and values["mutual_information"] is None
    else:
        for layer in layers:
            assert layer["kl"] == pytest.approx(sum(layer["kl_per_dimension"]), rel=1e-6)
    metrics = runs.read_json(run / "metrics.json")
    assert [layer["latent"] for layer in metrics["layers"]] == [l["latent"] for l in layers]
    assert metrics["test_kl"] == pytest.approx(sum(l["kl"] for l in metrics["layers"]))
