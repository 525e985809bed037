"""vaelab: learn, train and diagnose variational autoencoders (Keras 3).

Importing vaelab selects the JAX backend unless ``KERAS_BACKEND`` is already set
(so it must happen before Keras is first imported), turns on JAX's persistent
compilation cache, and registers every Keras class vaelab defines: after
``import vaelab``, ``keras.models.load_model`` reads any vaelab model file.
"""

import os
import tempfile

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

__version__ = "0.2.0"

# The public API. Importing these registers vaelab's Keras classes (layers, VAEModel,
# the Bernoulli loss) with Keras' serialization.
from vaelab.callbacks import KLAnnealing as KLAnnealing  # noqa: E402
from vaelab.callbacks import KLSchedule as KLSchedule  # noqa: E402
from vaelab.data import DataError as DataError  # noqa: E402
from vaelab.data import Dataset as Dataset  # noqa: E402
from vaelab.data import load_idx_dir as load_idx_dir  # noqa: E402
from vaelab.data import load_mnist as load_mnist  # noqa: E402
from vaelab.data import to_vectors as to_vectors  # noqa: E402
from vaelab.divergences import kl_diagonal_normals as kl_diagonal_normals  # noqa: E402
from vaelab.divergences import kl_normal as kl_normal  # noqa: E402
from vaelab.divergences import kl_standard_normal as kl_standard_normal  # noqa: E402
from vaelab.layers import OurDense as OurDense  # noqa: E402
from vaelab.layers import Sampling as Sampling  # noqa: E402
from vaelab.likelihoods import Bernoulli as Bernoulli  # noqa: E402
from vaelab.likelihoods import Gaussian as Gaussian  # noqa: E402
from vaelab.models import VAE as VAE  # noqa: E402
from vaelab.models import VAEModel as VAEModel  # noqa: E402
from vaelab.models import assemble as assemble  # noqa: E402
from vaelab.models import build_classifier as build_classifier  # noqa: E402
from vaelab.models import build_vae as build_vae  # noqa: E402
from vaelab.models import compile_vae as compile_vae  # noqa: E402

__all__ = [
    "Bernoulli", "DataError", "Dataset", "Gaussian", "KLAnnealing", "KLSchedule", "OurDense",
    "Sampling", "VAE", "VAEModel", "__version__", "assemble", "build_classifier", "build_vae",
    "compile_vae", "kl_diagonal_normals", "kl_normal", "kl_standard_normal", "load_idx_dir",
    "load_mnist", "to_vectors", "user_cache_dir",
]
