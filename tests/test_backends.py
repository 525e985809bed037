"""Data-parallel training and backend parity, each in a subprocess of its own."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import make_idx_dir

from vaelab.store import runs
ROOT = Path(__file__).resolve().parents[1]
TINY = ["--epochs", "3", "--hidden-dim", "32", "--latent-dim", "4", "--batch-size", "32", "--quiet"]


def vaelab_cli(args, **env):
    return subprocess.run([sys.executable, "-m", "vaelab.cli", *args], capture_output=True,
                          text=True, env={**os.environ, **env}, cwd=ROOT)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    make_idx_dir(folder, n_train=256, n_test=64)
    return folder


@pytest.mark.parametrize("family", [[], ["--model", "conv", "--conditional"]])
def test_data_parallel_on_two_cpu_devices_matches_one_device(tmp_path, data_dir, family):
    """DataParallel splits each batch of 32 over two devices and all-reduces the gradients.

    The same seed gives the same noise (JAX's random numbers do not depend on sharding),
    so only the order of floating-point sums differs: results agree to rtol 1e-5. The MLP
    and a conditional conv VAE.
    """
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2", "KERAS_BACKEND": "jax"}
    common = [*TINY, *family, "--data-dir", str(data_dir)]
    parallel = vaelab_cli(["train", *common, "--distribute", "--out", str(tmp_path / "p")], **env)
    assert parallel.returncode == 0, parallel.stderr[-2000:]
    single = vaelab_cli(["train", *common, "--out", str(tmp_path / "s")], **env)
    assert single.returncode == 0, single.stderr[-2000:]
    config = runs.read_json(tmp_path / "p" / "config.json")
    assert config["distribute"] is True and config["environment"]["data_parallel_devices"] == 2
    assert runs.read_json(tmp_path / "s" / "config.json")["environment"]["data_parallel_devices"] == 1
    a, b = (runs.read_history_csv(tmp_path / d / "history.csv") for d in ("p", "s"))
    for key in ("loss", "reconstruction_loss", "kl_loss", "val_loss"):
        np.testing.assert_allclose(a[key], b[key], rtol=1e-5)
    ma, mb = (runs.read_json(tmp_path / d / "metrics.json") for d in ("p", "s"))
    assert ma["test_mse"] == pytest.approx(mb["test_mse"], rel=1e-5)


def test_distribute_refuses_indivisible_batches(tmp_path, data_dir):
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2", "KERAS_BACKEND": "jax"}
    done = vaelab_cli(["train", *TINY, "--batch-size", "33", "--data-dir", str(data_dir),
                       "--distribute", "--out", str(tmp_path / "x")], **env)
    assert done.returncode == 2
    assert "needs a batch size divisible by 2, received 33" in done.stderr
    assert not (tmp_path / "x").exists()


needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                                 reason="the torch extra is not installed (pip install vaelab[torch])")


@needs_torch
def test_distribute_under_torch_is_a_clear_error(tmp_path, data_dir):
    done = vaelab_cli(["train", *TINY, "--data-dir", str(data_dir), "--distribute",
                       "--out", str(tmp_path / "x")], KERAS_BACKEND="torch")
    assert done.returncode == 2
    assert done.stderr == ("vaelab: error: --distribute needs the JAX backend (Keras' distribution "
                           "API); this is KERAS_BACKEND=torch\n")
    job = vaelab_cli(["train", *TINY, "--data-dir", str(data_dir), "--distribute",
                      "--coordinator", "127.0.0.1:5000", "--num-processes", "2", "--process-id",
                      "1", "--out", str(tmp_path / "x")], KERAS_BACKEND="torch")
    assert job.returncode == 2
    assert job.stderr == ("vaelab: error: a multi-process job needs the JAX backend (JAX's "
                          "distributed runtime); this is KERAS_BACKEND=torch\n")
    assert not (tmp_path / "x").exists()


@needs_torch
def test_torch_backend_parity():
    """The divergence, layer, convolution, model, annealing (the trap test), save/load and
    richer latent model tests, under torch."""
    files = ["tests/test_divergences.py", "tests/test_layers.py", "tests/test_callbacks.py",
             "tests/test_models.py", "tests/test_convolutions.py", "tests/test_latents.py"]
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-m", "not mnist", *files], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "KERAS_BACKEND": "torch"})
    assert done.returncode == 0, done.stdout[-3000:]
    assert " passed" in done.stdout.splitlines()[-1] and "failed" not in done.stdout.splitlines()[-1]


@needs_torch
def test_torch_thread_count_follows_vaelab_torch_threads():
    code = ("import vaelab, keras, torch, json; "
            "print(json.dumps([keras.backend.backend(), torch.get_num_threads()]))")
    for threads in ("1", "3"):
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              env={**os.environ, "KERAS_BACKEND": "torch",
                                   "VAELAB_TORCH_THREADS": threads})
        assert json.loads(done.stdout.strip().splitlines()[-1]) == ["torch", int(threads)]


def test_compiled_programs_are_cached_on_disk_unless_told_otherwise(tmp_path):
    code = ("import os, vaelab, jax; print(os.environ['JAX_COMPILATION_CACHE_DIR']); "
            "jax.jit(lambda v: v * 3 + 1)(jax.numpy.ones(5)).block_until_ready()")
    env = {k: v for k, v in os.environ.items()
           if k not in ("JAX_COMPILATION_CACHE_DIR", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS")}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    folder = tmp_path / "cache" / "vaelab" / "jax"
    assert done.stdout.strip() == str(folder), done.stderr
    assert any(folder.iterdir())
    env["JAX_COMPILATION_CACHE_DIR"] = str(tmp_path / "mine")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.stdout.strip() == str(tmp_path / "mine")  # the user's choice is kept


@needs_torch
def test_populations_fall_back_to_one_by_one_under_torch(tmp_path):
    """Under torch the runs train one by one, whatever ``--together`` says (one line)."""
    script = ("import vaelab\n"
              "from vaelab.training import population\n"
              "from vaelab.core.config import TrainConfig\n"
              "population.trainer.train_group = lambda configs, run_dirs, **_: "
              "[print('alone', d) for d in run_dirs]\n"
              f"plan = [population.Run(TrainConfig(seed=s), r'{tmp_path}/s' + str(s)) "
              "for s in (0, 1)]\n"
              "population.train_many(plan)\n"
              "population.train_many(plan, max_members=2)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={**os.environ, "KERAS_BACKEND": "torch"}, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines.count(f"alone {tmp_path}/s0") == 2 and lines.count(f"alone {tmp_path}/s1") == 2
    assert lines.count("vaelab: population training needs the JAX backend, this is torch: the 2 "
                       "runs train one by one") == 2 and "on a CPU" not in done.stdout
