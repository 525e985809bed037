"""vaelab as an installed package: a wheel in a fresh virtual environment, used outside
the checkout; registration of its Keras classes by ``import vaelab`` alone; the CLI's
``--version``, ``python -m vaelab`` and exact option names."""

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from conftest import make_idx_dir

import vaelab
from vaelab import cli
from vaelab.core.config import TrainConfig
from vaelab.training.trainer import train

ROOT = Path(__file__).resolve().parents[1]


def run(args, cwd, timeout=300, **env):
    """A child process bounded in time (killed by ``subprocess.run`` on time-out)."""
    environment = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    environment.update(KERAS_BACKEND="jax", **env)
    done = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=environment)
    assert done.returncode == 0, f"{args}: {done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A wheel of this checkout installed into a fresh venv that reuses the test venv's
    dependencies (a .pth line to its site-packages), and a small finished run."""
    root = tmp_path_factory.mktemp("wheel")
    run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "-w", root / "dist", ROOT], cwd=root)
    wheel = next((root / "dist").glob("vaelab-*.whl"))
    venv = root / "venv"
    run([sys.executable, "-m", "venv", venv], cwd=root)
    python = venv / "bin" / "python"
    target = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                      cwd=root).strip())
    (target / "reuse-test-deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    run([python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", wheel], cwd=root)
    make_idx_dir(root / "data", n_train=64, n_test=32)
    train(TrainConfig(epochs=1, hidden_dim=16, latent_dim=3, data_dir=str(root / "data")),
          root / "run", verbose=False)
    return venv, root


def test_the_wheel_is_what_runs(installed):
    venv, root = installed
    where = run([venv / "bin" / "python", "-c", "import vaelab; print(vaelab.__file__)"], cwd=root)
    assert Path(where.strip()).is_relative_to(venv)
    assert run([venv / "bin" / "python", "-m", "vaelab", "--version"], cwd=root).strip() == \
        f"vaelab {vaelab.__version__}"


def test_tutorial_build_from_the_wheel(installed):
    venv, root = installed
    run([venv / "bin" / "vaelab", "tutorial", "build", "--out", "tutorial"], cwd=root)
    student = (root / "tutorial" / "student" / "lab11.py").read_text()
    solution = (root / "tutorial" / "solution" / "lab11.py").read_text()
    assert "raise NotImplementedError('TODO:" in student and "#!hw" not in solution
    assert len(solution) > 5000


def test_explore_from_the_wheel(installed):
    venv, root = installed
    run([venv / "bin" / "vaelab", "explore", "run", "--out", "page.html"], cwd=root)
    page = (root / "page.html").read_text()
    assert "function makeModel" in page and "const DATA = {" in page


def test_load_model_in_a_fresh_interpreter_after_import_vaelab(installed):
    venv, root = installed
    code = ("import vaelab, keras; m = keras.models.load_model('run/model.keras'); "
            "print(type(m).__name__, m.likelihood.name, vaelab.VAE.from_model(m).latent_dim)")
    assert run([venv / "bin" / "python", "-c", code], cwd=root).split() == \
        ["VAEModel", "gaussian", "3"]


def test_import_leaves_the_matplotlib_backend_alone(tmp_path):
    code = ("import matplotlib; matplotlib.use('pdf'); import vaelab, vaelab.analysis.plots, "
            "vaelab.training.trainer, vaelab.experiments.lab; print(matplotlib.get_backend())")
    assert run([sys.executable, "-c", code], cwd=tmp_path).strip() == "pdf"


def test_options_are_not_matched_by_prefix(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["train", "--latent", "3"])
    assert exit_.value.code == 2
    assert "unrecognized arguments: --latent 3" in capsys.readouterr().err
