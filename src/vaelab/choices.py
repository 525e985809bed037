"""Every choice and default a user can type, in one module that imports nothing.

The library takes its settings' vocabularies from here (``TrainConfig`` checks against
them) and the command line builds its options from here before Keras is imported
(``vaelab_cli``), so ``vaelab --help`` answers at once and the two never disagree.
"""

MODELS = ("mlp", "conv")

# The Keras activations vaelab's models, figures and explorer (its JavaScript) all support:
# every element-wise one, and softmax / log_softmax. Left out: glu (halves the width),
# sparsemax and threshold (no parameter-free JavaScript twin checked against Keras).
ACTIVATIONS = ("relu", "relu6", "leaky_relu", "elu", "selu", "celu", "gelu", "silu", "swish",
               "hard_silu", "hard_swish", "mish", "softplus", "softsign", "sparse_plus",
               "squareplus", "tanh", "tanh_shrink", "hard_tanh", "soft_shrink", "hard_shrink",
               "sigmoid", "hard_sigmoid", "sparse_sigmoid", "log_sigmoid", "exponential",
               "linear", "softmax", "log_softmax")

LIKELIHOODS = ("gaussian", "bernoulli")
LEARNING_RATE_SCHEDULES = ("burda",)
OUTPUT_BIASES = ("zero", "data")  # the decoder output bias at the start (--output-bias)
DATASETS = ("mnist", "fashion-mnist")
DATASET_TITLES = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST"}
TUTORIAL_FORMATS = ("both", "ipynb", "py")

COORDINATOR_TIMEOUT = 60.0  # seconds a process of a job waits for the coordinator, by default
LAUNCH_GRACE_SECONDS = 10.0  # the launcher's wait between SIGTERM and SIGKILL
GRADING_TIMEOUT = 120        # seconds per exercise
GRADING_MEMORY = 4096        # MiB of address space per probe process (JAX alone maps ~1.8 GiB)
GRADING_SCRATCH = 128        # MiB of the grader's sandbox's private /tmp
NOTEBOOK_CELL_TIMEOUT = 1800  # seconds one cell of `vaelab tutorial run` may take
MAX_SAMPLES = 1024             # `vaelab sample --n`: a grid of at most 128 rows of 8 images
MAX_WAIT_SECONDS = 86400       # the longest time-out or grace period any option takes: a day
MAX_EPOCHS = 100_000            # `train --epochs`: Burda et al.'s longest schedule is 3 280
MAX_PLAN_SEEDS = 1000          # `vaelab lab|ablate --seeds`: 1000 seeds are 4000 or 5000 runs
MAX_HIDDEN_LAYERS = 256        # `--hidden` widths: a deeper MLP takes minutes to build, and
                               # past about 900 layers Keras' graph code exceeds Python's stack
MAX_LATENT_LAYERS = 16         # `--latent-dim` widths: stochastic layers (Burda et al. used 2)
MAX_PSEUDO_INPUTS = 10_000     # `--prior vamp:K`: K·D weights (31 MB for MNIST), K·L per step
MAX_FLOW_STEPS = 64            # `--posterior iaf:STEPS`: Kingma et al. used up to 8
MAX_SEED = 2**32 - 1          # seeds are 32-bit (NumPy's and Keras' generators)
