"""vaelab: learn, train and diagnose variational autoencoders (Keras 3).

Importing vaelab selects the JAX backend unless ``KERAS_BACKEND`` is already set
(so it must happen before Keras is first imported), turns on JAX's persistent
compilation cache, and registers every Keras class vaelab defines: after
``import vaelab``, ``keras.models.load_model`` reads any vaelab model file.
"""

import importlib
import importlib.abc
import importlib.metadata
import importlib.util
import os
import sys
import tempfile
import warnings

from vaelab.paths import user_cache_dir as user_cache_dir

os.environ.setdefault("KERAS_BACKEND", "jax")

# JAX's persistent compilation cache, read by JAX when it is first imported: programs
# compiled once are loaded from disk by later runs (the lab's later runs, the next
# `vaelab train`), which saves about 5 s of XLA compilation per run on a 2-core CPU.
# JAX_COMPILATION_CACHE_DIR picks another folder; an empty value turns the cache off.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    try:
        os.makedirs(os.path.join(user_cache_dir(), "jax"), exist_ok=True)
        os.environ["JAX_COMPILATION_CACHE_DIR"] = os.path.join(user_cache_dir(), "jax")
        os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    except OSError:
        # An unusable XDG_CACHE_HOME (a file, read-only) means no compilation cache, and
        # Matplotlib (which Keras imports) would print a warning of several lines about its
        # own cache there: give it a temporary folder, as it would make itself.
        if "MPLCONFIGDIR" not in os.environ:
            os.environ["MPLCONFIGDIR"] = tempfile.mkdtemp(prefix="vaelab-matplotlib-")

# Torch's CPU thread count, when asked for. Measured on a 2-core machine (lab model,
# batch 32, 300 steps): 1 thread 5.8-6.4 s, 2 threads 5.2-5.3 s; a 32-unit model showed
# no consistent difference, so torch's own default is kept unless this is set.
if os.environ["KERAS_BACKEND"] == "torch" and os.environ.get("VAELAB_TORCH_THREADS"):
    import torch

    torch.set_num_threads(int(os.environ["VAELAB_TORCH_THREADS"]))

try:  # the version lives in pyproject.toml alone
    __version__ = importlib.metadata.version("vaelab")
except importlib.metadata.PackageNotFoundError:  # a source tree that is not installed
    __version__ = "0+unknown"

# The public API. Importing these registers vaelab's Keras classes (layers, VAEModel,
# the Bernoulli loss) with Keras' serialization.
from vaelab.core.divergences import kl_diagonal_normals as kl_diagonal_normals, kl_normal as kl_normal, kl_standard_normal as kl_standard_normal  # noqa: E402
from vaelab.core.layers import OurDense as OurDense, Sampling as Sampling  # noqa: E402
from vaelab.core.likelihoods import Bernoulli as Bernoulli, Gaussian as Gaussian  # noqa: E402
from vaelab.core.models import VAE as VAE, VAEModel as VAEModel, assemble as assemble, build_classifier as build_classifier, build_vae as build_vae, compile_vae as compile_vae  # noqa: E402
from vaelab.data import DataError as DataError, Dataset as Dataset, load_idx_dir as load_idx_dir, load_mnist as load_mnist, to_vectors as to_vectors  # noqa: E402
from vaelab.training.callbacks import KLAnnealing as KLAnnealing, KLSchedule as KLSchedule  # noqa: E402

# Lazily: these import the training and analysis stack (Matplotlib among it).
_LAZY = {"TrainConfig": "vaelab.core.config", "UsageError": "vaelab.core.config",
         "train": "vaelab.training.trainer", "resume": "vaelab.training.trainer",
         "train_many": "vaelab.training.population", "Run": "vaelab.training.population",
         "evaluate": "vaelab.analysis.evaluation"}

# Where the modules of vaelab 0.2 went when 0.3 arranged the package by role
# (docs/architecture.md). Their old names still import, as the very same modules, with a
# DeprecationWarning; they go in 0.4.
_MOVED = {
    "config": "core.config", "divergences": "core.divergences", "likelihoods": "core.likelihoods",
    "objectives": "core.objectives", "layers": "core.layers", "schedules": "core.schedules",
    "models": "core.models", "devices": "dist.devices", "cluster": "dist.cluster",
    "launch": "dist.launch", "runs": "store.runs", "metrics": "analysis.metrics",
    "bounds": "analysis.bounds", "evaluation": "analysis.evaluation", "plots": "analysis.plots",
    "explorer": "analysis.explorer", "preflight": "training.preflight", "fit": "training.fit",
    "callbacks": "training.callbacks", "checkpoint": "training.checkpoint",
    "interrupts": "training.interrupts", "population": "training.population",
    "lab": "experiments.lab", "ablation": "experiments.ablation", "report": "experiments.report",
    "tutorial": "teaching.tutorial", "grading": "teaching.grading",
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports ``vaelab.<old>[.rest]`` as the module ``vaelab.<new>[.rest]`` itself."""

    def find_spec(self, fullname, path=None, target=None):
        parts = fullname.split(".")
        if len(parts) > 1 and parts[0] == "vaelab" and parts[1] in _MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        parts = spec.name.split(".")
        new = ".".join(["vaelab", _MOVED[parts[1]], *parts[2:]])
        warnings.warn(f"{spec.name} is now {new} (vaelab 0.3); the old name goes in 0.4",
                      DeprecationWarning, stacklevel=2)
        return importlib.import_module(new)

    def exec_module(self, module):
        pass  # the module is the new one, already executed


if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
    sys.meta_path.insert(0, _MovedModules())


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vaelab' has no attribute {name!r}")


__all__ = [
    "Bernoulli", "DataError", "Dataset", "Gaussian", "KLAnnealing", "KLSchedule", "OurDense",
    "Sampling", "VAE", "VAEModel", "__version__", "assemble", "build_classifier", "build_vae",
    "compile_vae", "kl_diagonal_normals", "kl_normal", "kl_standard_normal", "load_idx_dir",
    "load_mnist", "to_vectors", "user_cache_dir", *_LAZY,
]
