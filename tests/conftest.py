"""Shared fixtures: small MNIST-format folders made by the tests, real MNIST, and a lost Ctrl-C."""

import gzip
import os
import signal

os.environ.setdefault("KERAS_BACKEND", "jax")

import numpy as np
import pytest

import vaelab  # noqa: F401  (backend and compilation cache, before Keras starts JAX)
import keras  # noqa: E402
from keras import ops  # noqa: E402

# Grouped training steps (steps_per_execution > 1): Keras' torch trainer refuses them.
several_steps = pytest.mark.skipif(keras.backend.backend() == "torch",
                                   reason="Keras' torch trainer takes steps_per_execution=1 only")


def write_idx(path, array, gz=False):
    """Write a uint8 array as an IDX file (raw or gzip)."""
    array = np.asarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape)
    payload = header + array.tobytes()
    if gz:
        with gzip.open(f"{path}.gz", "wb") as f:
            f.write(payload)
    else:
        with open(path, "wb") as f:
            f.write(payload)


def make_idx_dir(folder, n_train=60, n_test=20, side=28, gz=False, seed=0):
    """A folder of the four IDX files with random content; returns the arrays."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, side, side)),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, side, side)),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        write_idx(folder / name, array, gz=gz)
    return {k: v.astype(np.uint8) for k, v in arrays.items()}


@pytest.fixture
def idx_dir(tmp_path):
    folder = tmp_path / "idx"
    make_idx_dir(folder)
    return folder


@pytest.fixture(scope="session")
def mnist():
    """Real MNIST, through the project's own loader (fetched into the cache if needed)."""
    from vaelab.data import load_mnist

    return load_mnist()


def jacobians(fn, *args):
    """∂fn(*args)/∂args[i] for every i by the backend's own autodiff (what training uses).

    Returns float64 NumPy arrays of shape ``out.shape + args[i].shape``. JAX and torch only:
    Keras 3 has no backend-neutral gradient API, so another backend skips the test.
    """
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        jac = jax.jacrev(fn, argnums=tuple(range(len(args))))(*(jax.numpy.asarray(a) for a in args))
    elif backend == "torch":
        import torch

        jac = torch.autograd.functional.jacobian(fn, tuple(torch.as_tensor(a) for a in args))
    else:
        pytest.skip(f"no autodiff helper for the {backend} backend (JAX and torch only)")
    return [np.asarray(ops.convert_to_numpy(j), dtype=np.float64) for j in jac]


def saved_weights(run_dir):
    """The weights of ``run_dir``'s ``model.keras`` as NumPy arrays."""
    model = keras.models.load_model(run_dir / "model.keras", safe_mode=True)
    return [np.asarray(w) for w in model.get_weights()]


def start_vaelab(args):
    """``python -m vaelab ARGS`` as a child process (pair it with :func:`finish`)."""
    import subprocess
    import sys

    return subprocess.Popen([sys.executable, "-m", "vaelab", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(child, timeout=180):
    """Wait for a child, bounded in time; kill it by its PID if it overruns.

    Returns ``(exit status, stdout, stderr)``.
    """
    import signal

    try:
        out, err = child.communicate(timeout=timeout)
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
            child.wait()
    return child.returncode, out, err


def self_signal_script(signal_name: str) -> str:
    """A ``python -c`` script that runs ``vaelab`` with its arguments and sends itself
    ``signal_name`` after the 5th batch of epoch 3 (SIGKILL: no cleanup; SIGINT: Ctrl-C)."""
    return (
        "import os, signal, sys\n"
        "import vaelab\n"
        "from vaelab import cli\nfrom vaelab.training import callbacks\n"
        "original = callbacks.StopOnNonFinite.on_train_batch_end\n"
        "def on_train_batch_end(self, batch, logs=None):\n"
        "    original(self, batch, logs)\n"
        "    if self._epoch == 3 and batch == 4:\n"
        f"        os.kill(os.getpid(), signal.{signal_name})\n"
        "callbacks.StopOnNonFinite.on_train_batch_end = on_train_batch_end\n"
        "sys.exit(cli.main(sys.argv[1:]))\n")


class _SignalsWhenCollected:
    """Sends this process SIGINT from its finalizer: the handler's exception is raised
    inside ``__del__``, where Python prints "Exception ignored" and drops it, as it does
    when the signal lands while a garbage-collector callback (JAX has one) runs."""

    def __del__(self):
        signal.raise_signal(signal.SIGINT)


def lose_a_ctrl_c() -> None:
    """A Ctrl-C whose exception never reaches the code that runs."""
    _SignalsWhenCollected()  # collected at once


@pytest.fixture
def signal_handlers():
    """SIGINT's and SIGTERM's handlers as they were before the test (an interrupted
    command run in-process leaves them ignored, as a process on its way out)."""
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for s, handler in before.items():
        signal.signal(s, handler)


def pytest_terminal_summary(terminalreporter):
    """How many generated cases each property test ran (tests/test_properties.py), shown at
    the end of every run and kept in build/test-artifacts/property-cases.json."""
    import json
    import sys
    from pathlib import Path

    module = sys.modules.get("test_properties")
    if module is None or not module.COUNTS:
        return
    counts = dict(sorted(module.COUNTS.items()))
    terminalreporter.write_line(f"generated cases run: {sum(counts.values())} "
                                f"({', '.join(f'{k} {v}' for k, v in counts.items())})")
    folder = Path(__file__).parent.parent / "build" / "test-artifacts"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "property-cases.json").write_text(json.dumps(counts, indent=1) + "\n")
