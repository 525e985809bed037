import base64
import json
import os
import shutil
import subprocess
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import make_idx_dir

from vaelab import cli
from vaelab.analysis import explorer
from vaelab.core.config import TrainConfig
from vaelab.core.latents import LatentStack
from vaelab.core.models import build_vae, compile_vae
from vaelab.training.trainer import train

ROOT = Path(__file__).resolve().parents[1]
PLAYWRIGHT = ROOT / "build" / "node" / "node_modules" / "playwright-core"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = ROOT / "build" / "test-artifacts"


def require(condition, what):
    """In CI a missing browser is a failure (make test installs it); elsewhere a skip."""
    if not condition:
        if os.environ.get("CI"):
            pytest.fail(f"{what} is missing; `make test` installs it")
        pytest.skip(f"{what} is missing; `make test` installs it")


def run_in_node(tmp_path, vae, x, z, labels) -> dict:
    """The page's encoder on ``x`` and decoder on ``z``, run by tests/explorer_numeric.js."""
    case = {"model": explorer.model_spec(vae), "x": x.tolist(), "z": z.tolist(),
            "labels": labels}
    (tmp_path / "case.json").write_text(json.dumps(case))
    done = subprocess.run(["node", str(ROOT / "tests" / "explorer_numeric.js"),
                           str(explorer.CORE_JS), str(tmp_path / "case.json")],
                          capture_output=True, text=True, check=True, timeout=120)
    return json.loads(done.stdout)


@pytest.mark.parametrize("likelihood,hidden,activation,model,classes", [
    ("gaussian", 64, "relu", "mlp", 0), ("bernoulli", 64, "relu", "mlp", 0),
    ("gaussian", (48, 24), "tanh", "mlp", 0), ("bernoulli", (32, 16, 8), "gelu", "mlp", 0),
    ("gaussian", 16, "relu", "conv", 0), ("bernoulli", 16, "relu", "conv", 0),
    ("gaussian", 32, "relu", "mlp", 10), ("gaussian", 16, "relu", "conv", 10)])
def test_javascript_forward_passes_match_keras(tmp_path, likelihood, hidden, activation, model,
                                               classes):
    """The page's encoder and decoder (dense, convolution, transposed convolution, label
    concatenation) against Keras, to 1e-4."""
    require(shutil.which("node"), "node")
    keras.utils.set_random_seed(3)
    vae = compile_vae(build_vae(hidden_dim=hidden, latent_dim=5, seed=3, likelihood=likelihood,
                                activation=activation, model=model, classes=classes))
    rng = np.random.default_rng(0)
    x = rng.random((4, 784)).astype(np.float32)
    z = rng.normal(size=(4, 5)).astype(np.float32)
    labels = [3, 0, 7, 9] if classes else None
    js = run_in_node(tmp_path, vae, x, z, labels)
    mean, log_var = vae.encode(x, labels=labels)
    decoded = vae.decode(z, labels=labels)
    assert np.abs(np.array(js["mean"]) - mean).max() <= 1e-4
    assert np.abs(np.array(js["log_var"]) - log_var).max() <= 1e-4
    assert np.abs(np.array(js["decoded"]) - decoded).max() <= 1e-4


@pytest.mark.parametrize("model,classes,upper", [
    ("mlp", 0, [(3, (12,))]), ("mlp", 10, [(3, (12, 6))]), ("conv", 0, [(4, (8,)), (2, (6,))])])
def test_javascript_runs_the_top_layer_of_a_hierarchy(tmp_path, model, classes, upper):
    """Two or three stochastic layers: the page's encoder goes up the posterior means to the
    top layer, its decoder down the prior means to z₁ and through the decoder."""
    require(shutil.which("node"), "node")
    keras.utils.set_random_seed(4)
    vae = build_vae(hidden_dim=16, latent_dim=5, seed=3, activation="tanh", model=model,
                    classes=classes, upper=upper)
    rng = np.random.default_rng(1)
    x = rng.random((4, 784)).astype(np.float32)
    top = rng.normal(size=(4, upper[-1][0])).astype(np.float32)
    labels = [3, 0, 7, 9] if classes else None
    js = run_in_node(tmp_path, vae, x, top, labels)
    mean, log_var = vae.encode(x, labels=labels)
    for net in vae.sampling.up_nets:
        mean, log_var = (np.asarray(v) for v in LatentStack._run_gaussian_net(net, mean))
    decoded = vae.decode(np.asarray(vae.sampling.top_to_bottom_mean(top)), labels=labels)
    assert np.abs(np.array(js["mean"]) - mean).max() <= 1e-4
    assert np.abs(np.array(js["log_var"]) - log_var).max() <= 1e-4
    assert np.abs(np.array(js["decoded"]) - decoded).max() <= 1e-4


def test_pages_of_richer_latent_models_say_what_they_show(tmp_path):
    root = tmp_path
    make_idx_dir(root / "data", n_train=64, n_test=32)
    base = dict(epochs=1, hidden_dim=16, latent_dim=4, data_dir=str(root / "data"))
    pages = {}
    for name, extra in (("two", dict(latent_dim=(4, 2), hidden_dim=((16,), (8,)))),
                        ("vamp", dict(prior="vamp:3", posterior="iaf:1"))):
        train(TrainConfig(**{**base, **extra}), root / name, verbose=False)
        text = (root / name / "explorer.html").read_text()
        pages[name] = json.loads(text[text.index("const DATA = ") + 13:].split(";\n", 1)[0])
    assert pages["two"]["note"].startswith("2 stochastic layers: the sliders move the top layer")
    assert len(pages["two"]["kl"]) == 2 and pages["two"]["prior"] is None
    prior = pages["vamp"]["prior"]
    assert prior["components"] == 3 and "VampPrior" in pages["vamp"]["note"]
    assert "IAF posterior (1 steps)" in pages["vamp"]["note"]
    means = np.frombuffer(base64.b64decode(prior["means"]), "<f4")
    assert means.shape == (3 * 4,)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("explore")
    make_idx_dir(root / "data", n_train=128, n_test=64)
    config = TrainConfig(epochs=1, hidden_dim=32, latent_dim=4, data_dir=str(root / "data"))
    train(config, root / "run", verbose=False)
    return root / "run"


def test_page_is_self_contained_and_orders_dimensions_by_kl(run_dir):
    page = (run_dir / "explorer.html").read_text()
    assert "http://" not in page and "https://" not in page and "<script src" not in page
    data = json.loads(page.split("const DATA = ", 1)[1].split(";\n", 1)[0])
    assert sorted(data["order"]) == [0, 1, 2, 3]
    kl = [data["kl"][i] for i in data["order"]]
    assert kl == sorted(kl, reverse=True)
    assert len(data["pca"]["points"]) == 64 and len(data["images"]) == 12


def test_explore_command(run_dir, tmp_path, capsys):
    out = tmp_path / "page.html"
    assert cli.main(["explore", str(run_dir), "--out", str(out)]) == 0
    assert out.read_text() == (run_dir / "explorer.html").read_text()
    (run_dir / "metrics.json").rename(run_dir / "metrics.bak")
    try:
        assert cli.main(["explore", str(run_dir), "--out", str(tmp_path / "x.html")]) == 2
        assert "incomplete run" in capsys.readouterr().err
    finally:
        (run_dir / "metrics.bak").rename(run_dir / "metrics.json")


@pytest.fixture(scope="module")
def conv_run_dir(tmp_path_factory):
    """A conditional conv run: the page's convolutions and class selector in a browser."""
    root = tmp_path_factory.mktemp("explore-conv")
    make_idx_dir(root / "data", n_train=128, n_test=64)
    config = TrainConfig(epochs=1, model="conv", conditional=True, hidden_dim=16, latent_dim=4,
                         data_dir=str(root / "data"))
    train(config, root / "run", verbose=False)
    return root / "run"


def test_conv_conditional_page_in_headless_chromium(conv_run_dir):
    page = (conv_run_dir / "explorer.html").read_text()
    assert '"type":"conv2d_transpose"' in page and '"classes":10' in page
    test_page_in_headless_chromium(conv_run_dir, "explorer-conv.png")


def test_page_in_headless_chromium(run_dir, name="explorer.png"):
    require(Path(CHROMIUM).exists(), "chromium (Debian package)")
    require(PLAYWRIGHT.exists(), "playwright-core (npm)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    screenshot = ARTIFACTS / name
    done = subprocess.run(
        ["node", str(ROOT / "tests" / "explorer_browser.js"), str(run_dir / "explorer.html"),
         str(screenshot)], capture_output=True, text=True, timeout=180,
        env={**os.environ, "PLAYWRIGHT_CORE": str(PLAYWRIGHT), "CHROMIUM": CHROMIUM})
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["errors"] == [] and found["requests"] == []
    assert found["changed"] > 0.1            # moving the first slider changed the decoded image
    assert len(found["encoding"]) == 4        # the drawing was encoded ...
    assert found["recon_sum"] > 0             # ... and reconstructed
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("side", [28, 20, 7, 224, 300])
def test_drawing_is_downsampled_for_any_image_side(tmp_path, side):
    """The page's drawing canvas (224 pixels) averaged to side x side: block means, no NaN."""
    require(shutil.which("node"), "node")
    width = 224
    done = subprocess.run(["node", str(ROOT / "tests" / "explorer_downsample.js"),
                           str(explorer.CORE_JS), str(width), str(side)],
                          capture_output=True, text=True, check=True, timeout=60)
    pixels = np.array(json.loads(done.stdout)).reshape(side, side)
    canvas = (np.arange(width * width) % 256).reshape(width, width) / 255
    edges = [round(k * width / side) for k in range(side + 1)]
    expected = np.array([[canvas[edges[r]:max(edges[r + 1], edges[r] + 1),
                                 edges[c]:max(edges[c + 1], edges[c] + 1)].mean()
                          for c in range(side)] for r in range(side)])
    assert np.isfinite(pixels).all()
    np.testing.assert_allclose(pixels, expected, atol=1e-12)


def test_run_names_are_html_escaped():
    page = explorer.render_html({"x": 1}, "vaelab explorer: <b>&run</b>")
    assert "<title>vaelab explorer: &lt;b&gt;&amp;run&lt;/b&gt;</title>" in page
    assert "<b>&run</b>" not in page


def test_every_supported_activation_matches_keras(tmp_path):
    """The page's activations against Keras' on [-6, 6], to 1e-6 (GELU's erf: 1.5e-7)."""
    require(shutil.which("node"), "node")
    from vaelab.core.config import ACTIVATIONS

    x = np.linspace(-6, 6, 97).astype(np.float32)
    (tmp_path / "case.json").write_text(json.dumps({"x": x.tolist(), "names": ACTIVATIONS}))
    done = subprocess.run(["node", str(ROOT / "tests" / "explorer_activations.js"),
                           str(explorer.CORE_JS), str(tmp_path / "case.json")],
                          capture_output=True, text=True, check=True, timeout=60)
    js = json.loads(done.stdout)
    for name in ACTIVATIONS:
        expected = keras.ops.convert_to_numpy(keras.activations.get(name)(x))
        np.testing.assert_allclose(js[name], expected, rtol=1e-5, atol=1e-6, err_msg=name)
