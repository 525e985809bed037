"""vaelab: learn, train and diagnose variational autoencoders (Keras 3).

Importing vaelab selects the JAX backend unless ``KERAS_BACKEND`` is already
set, so it must happen before Keras is first imported. Submodules are loaded
on first use, which keeps ``vaelab data`` and argument errors fast.
"""

import importlib
import os

os.environ.setdefault("KERAS_BACKEND", "jax")

# JAX's persistent compilation cache, read by JAX when it is first imported: programs
# compiled once are loaded from disk by later runs (the lab's later runs, the next
# `vaelab train`), which saves about 5 s of XLA compilation per run on a 2-core CPU.
# JAX_COMPILATION_CACHE_DIR picks another folder; an empty value turns the cache off.
def user_cache_dir() -> str:
    """``$XDG_CACHE_HOME/vaelab`` (default ``~/.cache/vaelab``): MNIST and compiled programs."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "vaelab")


if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = os.path.join(user_cache_dir(), "jax")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

# Torch's CPU thread count, when asked for. Measured on a 2-core machine (lab model,
# batch 32, 300 steps): 1 thread 5.8-6.4 s, 2 threads 5.2-5.3 s; a 32-unit model showed
# no consistent difference, so torch's own default is kept unless this is set.
if os.environ["KERAS_BACKEND"] == "torch" and os.environ.get("VAELAB_TORCH_THREADS"):
    import torch

    torch.set_num_threads(int(os.environ["VAELAB_TORCH_THREADS"]))

__version__ = "0.1.0"

_EXPORTS = {
    "DataError": "data",
    "load_mnist": "data",
    "load_idx_dir": "data",
    "to_vectors": "data",
    "kl_normal": "divergences",
    "kl_standard_normal": "divergences",
    "kl_diagonal_normals": "divergences",
    "OurDense": "layers",
    "Sampling": "layers",
    "VAE": "models",
    "build_vae": "models",
    "compile_vae": "models",
    "build_classifier": "models",
    "KLAnnealing": "callbacks",
    "KLSchedule": "callbacks",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'vaelab' has no attribute {name!r}")
    return getattr(importlib.import_module(f"vaelab.{module}"), name)
