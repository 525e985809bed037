"""The ``vaelab`` command line's options: one parser, shared options defined once.

This module imports nothing of vaelab but :mod:`vaelab.choices`, so the console script
(``vaelab_cli``) parses with it before Keras and JAX load: ``--help``, ``--version`` and a
mistyped option answer at once. Each command names its handler in
:mod:`vaelab.cli.commands`, which runs only once the arguments are good.
"""

from __future__ import annotations

import argparse
import importlib.metadata

from vaelab import choices

TOGETHER_HELP = ("train up to N ≥ 1 compatible runs (differing only in seed, KL scale, beta, free "
                 "bits or KL schedule) together as one population: same histories, one "
                 "compiled step (default: 8 on an accelerator, 1 = one by one on a CPU)")


def version() -> str:
    try:
        return importlib.metadata.version("vaelab")
    except importlib.metadata.PackageNotFoundError:  # a source tree that is not installed
        return "0+unknown"


def _int(text: str) -> int:
    """An integer argument; the range is checked with the rest of the config."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, received {text!r}") from None


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, received {text!r}") from None


def _per_layer(convert, expected: str):
    """An argument type: one value, or values separated by commas (one per stochastic
    layer); a tuple for several."""
    def parse(text: str):
        try:
            values = tuple(convert(p) for p in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {expected}, or one per stochastic layer separated by commas"
                f"{' (e.g. 32 or 100,50)' if convert is int else ''}, received {text!r}") from None
        return values[0] if len(values) == 1 else values
    return parse


_floats = _per_layer(float, "a number")
_latents = _per_layer(int, "a positive integer")


def _path(text: str) -> str:
    """A file or folder argument: an empty string is refused, not read as the default."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"expected a path, received {text!r}")
    return text


def _widths(text: str) -> tuple[int, ...]:
    """``--hidden 512`` or ``--hidden 200,200``: positive integer widths, comma separated;
    ``200,200/100,100``: one group per stochastic layer, separated by '/'."""
    try:
        groups = tuple(tuple(int(p) for p in group.split(",")) for group in text.split("/"))
    except ValueError:
        groups = ()
    if not text.strip() or not groups or any(w <= 0 for g in groups for w in g):
        raise argparse.ArgumentTypeError(
            f"expected positive integer widths separated by commas (e.g. 512 or 200,200), and "
            f"one group per stochastic layer separated by '/' (200,200/100,100), received "
            f"{text!r}")
    return groups[0] if len(groups) == 1 else groups


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage block), exit status 2, and no abbreviated
    options (``--hidden`` is not taken for ``--hidden-dim``)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


# Options several commands share, each defined here once; a command says only what differs.

def add_out(parser, what: str, default: str | None = None, default_text: str | None = None):
    """``--out``: where the command writes ``what``."""
    shown = default_text or default
    parser.add_argument("--out", type=_path, default=default,
                        help=f"{what} (default {shown})" if shown else what)


def add_data_dir(parser, default_text: str = "verified MNIST"):
    parser.add_argument("--data-dir", type=_path,
                        help=f"a folder of MNIST-format IDX files (default: {default_text})")


def add_dataset(parser, help_text: str, default: str | None = None):
    parser.add_argument("--dataset", choices=choices.DATASETS, default=default, help=help_text)


def add_overwrite(parser, help_text: str = "reuse a non-empty --out folder"):
    parser.add_argument("--overwrite", action="store_true", help=help_text)


def add_quiet(parser, help_text: str = "no progress bars"):
    parser.add_argument("--quiet", action="store_true", help=help_text)


def add_quick(parser, help_text: str):
    parser.add_argument("--quick", action="store_true", help=help_text)


def add_run_dir(parser):
    parser.add_argument("run_dir", metavar="RUN_DIR", type=_path)


def add_runs_of_many(parser, command: str, seeds_help: str):
    """What ``lab`` and ``ablate`` share: seeds, populations, data, overwrite, resume, quiet."""
    parser.add_argument("--seeds", type=_int, metavar="N",
                        help=f"{seeds_help}; 1 to {choices.MAX_PLAN_SEEDS}")
    parser.add_argument("--together", type=_int, metavar="N", help=TOGETHER_HELP)
    add_data_dir(parser)
    add_overwrite(parser)
    parser.add_argument("--resume", metavar="DIR", type=_path,
                        help=f"finish an interrupted `vaelab {command}` in DIR with its own "
                             f"settings (started runs from their last checkpoint), then its "
                             f"report")
    add_quiet(parser)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="vaelab", description="Learn, train and diagnose variational autoencoders.")
    parser.add_argument("--version", action="version", version=f"vaelab {version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _data(commands)
    _train(commands)
    _launch(commands)
    _analysis(commands)
    _tutorial(commands)
    _experiments(commands)
    return parser


def _data(commands) -> None:
    data = commands.add_parser("data", help="fetch or inspect the MNIST files")
    data_commands = data.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")
    fetch = data_commands.add_parser(
        "fetch", help="put a verified named dataset in the user cache (no-op when it is there)")
    add_dataset(fetch, "default mnist", default="mnist")
    fetch.set_defaults(func="data_fetch")
    info = data_commands.add_parser("info", help="counts, label histogram and checksum status")
    add_dataset(info, "the named dataset to show or check against (default mnist)",
                default="mnist")
    add_data_dir(info, "the cache")
    info.set_defaults(func="data_info")


def _train(commands) -> None:
    train = commands.add_parser(
        "train", help="train one VAE and write a run folder",
        description="Train the lab's VAE (784-512-32) and write config.json, history.csv, "
                    "model.keras, metrics.json and figures into a run folder.")
    train.add_argument("--epochs", type=_int, help=f"passes over the data, 1 to {choices.MAX_EPOCHS} (default 2)")
    train.add_argument("--batch-size", type=_int, metavar="N",
                       help="images per step, 1 to the training images (default 32)")
    train.add_argument("--model", choices=choices.MODELS,
                       help="the encoder and decoder: mlp (the lab's, default) or conv "
                            "(two stride-2 convolutions each way; image side divisible by 4)")
    train.add_argument("--conditional", action="store_const", const=True,
                       help="a conditional VAE: the one-hot class label goes to the encoder "
                            "and the decoder")
    train.add_argument("--hidden", type=_widths, metavar="W[,W…][/W[,W…]…]",
                       help=f"hidden widths of the MLP encoder, mirrored in the decoder "
                            f"(default 512; 200,200 is two hidden layers; at most "
                            f"{choices.MAX_HIDDEN_LAYERS} widths); with several stochastic "
                            f"layers one group per layer, bottom-up, separated by '/'")
    train.add_argument("--hidden-dim", type=_int, metavar="W",
                       help="one hidden width, 1 or more (same as --hidden W)")
    train.add_argument("--activation", choices=choices.ACTIVATIONS, metavar="NAME",
                       help="of the hidden layers, a Keras activation (default relu): "
                            + ", ".join(choices.ACTIVATIONS))
    train.add_argument("--latent-dim", type=_latents, metavar="N[,N…]",
                       help="dimensions of z, 1 or more (default 32); a list is one width per "
                            "stochastic layer, bottom-up: 100,50 is Burda et al.'s two-layer "
                            "model (then --hidden needs one group of widths per layer, e.g. "
                            "200,200/100,100)")
    train.add_argument("--prior", metavar="standard|vamp:K",
                       help="the prior of z: standard (N(0, I), default) or vamp:K, the "
                            "VampPrior of K learned pseudo-inputs (Tomczak & Welling)")
    train.add_argument("--posterior", metavar="gaussian|iaf:STEPS[:context]",
                       help="the posterior of z: gaussian (diagonal, default) or iaf:STEPS "
                            "inverse autoregressive flow steps on it (Kingma et al.); "
                            "iaf:STEPS:context gives each step the encoder's mean and "
                            "log-variance too, so the flow depends on x")
    train.add_argument("--kl-scale",
                       help="multiplies the KL; a positive fraction or number (default 1/784 for the "
                            "gaussian likelihood, 1 for bernoulli; 1 = unscaled)")
    train.add_argument("--beta", type=_float, metavar="B",
                       help="the KL term times B > 0 on top of the natural scale (default 1)")
    train.add_argument("--free-bits", type=_floats, metavar="NATS[,NATS…]",
                       help="each latent dimension's batch-mean KL counts at least NATS ≥ 0 "
                            "(Kingma et al. 2016; default 0, off); with several stochastic "
                            "layers one value for all, or one per layer")
    train.add_argument("--objective", metavar="elbo|iwae:K",
                       help="elbo (default) or the importance-weighted bound of K ≥ 1 samples "
                            "(K is checked against this machine's memory)")
    train.add_argument("--likelihood", choices=choices.LIKELIHOODS,
                       help="decoder likelihood: gaussian (the lab's MSE, default) or bernoulli "
                            "(logits, summed cross-entropy, images binarized)")
    train.add_argument("--anneal", metavar="START:DURATION",
                       help="the lab's linear KL annealing, e.g. 4:8")
    train.add_argument("--schedule", metavar="SPEC",
                       help="cyclical:CYCLES:RATIO, sigmoid:CENTER:STEEPNESS, linear:START:DURATION "
                            "or constant:WEIGHT")
    train.add_argument("--learning-rate", type=_float, metavar="RATE",
                       help="Adam's, a positive number (default 0.001)")
    train.add_argument("--lr-schedule", choices=choices.LEARNING_RATE_SCHEDULES,
                       help="burda: the rate times 10^(-i/7) for 3^i passes, i = 0…7 "
                            "(Burda et al. 2015)")
    train.add_argument("--adam-epsilon", type=_float, metavar="EPS",
                       help="Adam's epsilon, a positive number (default 1e-7)")
    train.add_argument("--output-bias", choices=choices.OUTPUT_BIASES,
                       help="the decoder's output bias at the start: zero (default) or data, the "
                            "training images' mean pixel (its logit for bernoulli), as in Burda "
                            "et al.'s code (--model mlp)")
    train.add_argument("--seed", type=_int,
                       help=f"of weights, noise and batch order, 0 to {choices.MAX_SEED} (default 0)")
    add_dataset(train, "the named dataset: mnist (default) or fashion-mnist")
    add_data_dir(train)
    train.add_argument("--train-size", type=_int, metavar="N",
                       help="use only the first N training images, 1 to as many as the data "
                            "have (default all)")
    train.add_argument("--test-size", type=_int, metavar="N",
                       help="use only the first N test images, 2 to as many as the data have "
                            "(default all)")
    train.add_argument("--distribute", action="store_const", const=True,
                       help="data-parallel training over all devices (JAX backend): this "
                            "process's, or those of every process of a job")
    train.add_argument("--coordinator", metavar="HOST:PORT",
                       help="with --distribute: the job's coordinator, served by process 0 "
                            "(see docs/scaling.md; vaelab launch sets it)")
    train.add_argument("--num-processes", type=_int, metavar="N",
                       help="with --coordinator: processes in the job, 1 or more")
    train.add_argument("--process-id", type=_int, metavar="I",
                       help="with --coordinator: this process's index, 0..N-1 (0 writes)")
    train.add_argument("--coordinator-timeout", type=_float, metavar="SECONDS",
                       help=f"how long to wait for the coordinator, more than 0 and at most "
                            f"{choices.MAX_WAIT_SECONDS} (default {choices.COORDINATOR_TIMEOUT:g})")
    add_out(train, "run folder", default_text="runs/<timestamp>")
    add_overwrite(train)
    train.add_argument("--resume", metavar="RUN_DIR", type=_path,
                       help="continue an interrupted run from its last checkpoint")
    add_quiet(train, "no progress bar or summary")
    train.set_defaults(func="train")


def _launch(commands) -> None:
    launch = commands.add_parser(
        "launch", help="run vaelab train as a multi-process job on this machine",
        description="Starts N `vaelab train --distribute` processes joined by a coordinator on "
                    "127.0.0.1, shows process 0's output (process 0 writes the run folder), and "
                    "stops all of them when one fails or on Ctrl-C. Example: vaelab launch "
                    "--num-processes 2 -- train --epochs 5 --out runs/two")
    launch.add_argument("--num-processes", type=_int, required=True, metavar="N",
                        help="processes to start, 1 to the number of cores (and as many as "
                             "memory holds, about 0.8 GiB each); process 0 writes the run "
                             "folder")
    launch.add_argument("--grace", type=_float, default=choices.LAUNCH_GRACE_SECONDS,
                        metavar="SECONDS",
                        help="seconds, 0 or more, between SIGTERM and SIGKILL when stopping "
                             f"the processes (default {choices.LAUNCH_GRACE_SECONDS:g})")
    launch.add_argument("train_args", nargs=argparse.REMAINDER, metavar="-- train [OPTIONS]")
    launch.set_defaults(func="launch")


def _analysis(commands) -> None:
    evaluate = commands.add_parser(
        "evaluate", help="ELBO, IWAE likelihood and latent diagnostics of a finished run",
        description="Writes evaluation.json into RUN_DIR: ELBO, IWAE NLL with k samples per "
                    "image, KL, KL per dimension, active units, mutual information.")
    add_run_dir(evaluate)
    evaluate.add_argument("--k", type=_int, default=5000,
                          help="importance samples per image, 1 or more; above 5000 it says how "
                               "long it would take and needs --force (default 5000)")
    add_data_dir(evaluate, "the run's data")
    evaluate.add_argument("--test-size", type=_int, metavar="N",
                          help="evaluate on the first N test images, 1 to as many as the data "
                               "have (default: those the run validated on)")
    evaluate.add_argument("--force", action="store_true",
                          help="run a --k above 5000 (it prints its estimated time otherwise)")
    add_quiet(evaluate, "no progress bar")
    evaluate.set_defaults(func="evaluate")

    explore = commands.add_parser(
        "explore", help="write an interactive latent-space page for a finished run",
        description="Writes one self-contained HTML page (weights embedded, no network needed): "
                    "latent sliders, drawing a digit to encode it, interpolation.")
    add_run_dir(explore)
    add_out(explore, "the page to write", default_text="RUN_DIR/explorer.html")
    add_data_dir(explore, "the data the run recorded; needed for runs trained on arrays")
    explore.set_defaults(func="explore")

    sample = commands.add_parser(
        "sample", help="decode prior samples of a finished run into a PNG grid",
        description="Decodes z ~ N(0, I): for a conditional run all of --label, or one row per "
                    "class without it.")
    add_run_dir(sample)
    sample.add_argument("--label", type=_int,
                        help="the class to draw, 0 to the run's classes - 1 (conditional runs)")
    sample.add_argument("--n", type=_int, default=64,
                        help=f"samples, 1 to {choices.MAX_SAMPLES} (default 64)")
    sample.add_argument("--seed", type=_int, default=0,
                        help=f"of the prior draws, 0 to {choices.MAX_SEED} (default 0)")
    add_out(sample, "the PNG to write",
            default_text="RUN_DIR/samples-class-L.png or samples-prior.png")
    sample.set_defaults(func="sample")


def _tutorial(commands) -> None:
    tutorial = commands.add_parser("tutorial", help="the lab as a Python tutorial")
    tutorial_commands = tutorial.add_subparsers(dest="tutorial_command", required=True,
                                                metavar="SUBCOMMAND")
    build = tutorial_commands.add_parser(
        "build", help="write the student and solution versions",
        description="Writes DIR/solution/lab11.py (exercise markers removed) and "
                    "DIR/student/lab11.py (each exercise replaced by its TODO hint).")
    add_out(build, "the folder to write", default="build/tutorial")
    add_overwrite(build, "replace a student copy that has been edited")
    build.add_argument("--source", type=_path,
                       help="a marked tutorial (default: the lab, shipped with vaelab)")
    build.add_argument("--format", choices=choices.TUTORIAL_FORMATS, default="both",
                       help="ipynb: lab11-student.ipynb and lab11-solution.ipynb; "
                            "py: student/lab11.py and solution/lab11.py; both (default)")
    build.set_defaults(func="tutorial_build")

    run = tutorial_commands.add_parser(
        "run", help="execute a notebook top to bottom and write the executed copy",
        description="Runs every cell in a fresh Python 3 kernel (needs vaelab[notebooks]); "
                    "for an answer key with every output and figure.")
    run.add_argument("notebook", metavar="NOTEBOOK", type=_path)
    add_out(run, "the executed copy", default_text="NOTEBOOK-executed.ipynb")
    add_quick(run, "the tutorial's small subset (about a minute)")
    run.add_argument("--html", action="store_true",
                     help="also render the executed copy as HTML (nbconvert)")
    run.add_argument("--timeout", type=_float, default=choices.NOTEBOOK_CELL_TIMEOUT,
                     metavar="SECONDS",
                     help=f"the longest one cell may run, more than 0 and at most "
                          f"{choices.MAX_WAIT_SECONDS} seconds (default "
                          f"{choices.NOTEBOOK_CELL_TIMEOUT})")
    run.set_defaults(func="tutorial_run")

    check = tutorial_commands.add_parser(
        "check", help="grade students' notebooks exercise by exercise, in a sandbox",
        description="Checks every exercise of each submission (.ipynb or percent-format .py; "
                    "a folder: every such file in it) on inputs drawn from a seed. Student "
                    "code runs in a sandbox (bubblewrap: no network, a read-only system, a "
                    "private /tmp, limits) and only reports numbers; this process decides. "
                    "Exit status: 0 all pass, 1 some fail or are not attempted, 2 unusable "
                    "input.")
    check.add_argument("submissions", metavar="FILE_OR_FOLDER", nargs="+", type=_path)
    check.add_argument("--json", action="store_true",
                       help="print the results as JSON (for gradebooks)")
    check.add_argument("--csv", type=_path, metavar="FILE",
                       help="also write one row of scores per submission (once all are graded)")
    check.add_argument("--feedback", type=_path, metavar="FOLDER",
                       help="write one Markdown feedback file per submission there")
    check.add_argument("--jobs", type=_int, metavar="N",
                       help="checks run at once, 1 to the number of cores (default: all of them)")
    check.add_argument("--seed", type=_int, metavar="S",
                       help="draw the checks' inputs from S, 0 to 2**32-1 (default: a fresh "
                            "one, printed; the same S regrades identically)")
    check.add_argument("--timeout", type=_float, default=choices.GRADING_TIMEOUT,
                       help=f"seconds per exercise, more than 0 and at most "
                            f"{choices.MAX_WAIT_SECONDS} (default {choices.GRADING_TIMEOUT})")
    check.add_argument("--memory", type=_int, default=choices.GRADING_MEMORY, metavar="MIB",
                       help=f"address space of each check's processes, 256 to this "
                            f"machine's memory (default {choices.GRADING_MEMORY})")
    check.add_argument("--scratch", type=_int, metavar="MIB",
                       help=f"size of the sandbox's private /tmp, 1 to this machine's "
                            f"memory (default {choices.GRADING_SCRATCH})")
    check.add_argument("--no-sandbox", action="store_true",
                       help="run student code without a sandbox, with your rights "
                            "(only for code you trust)")
    check.set_defaults(func="tutorial_check")


def _experiments(commands) -> None:
    lab = commands.add_parser(
        "lab", help="run the whole VAE lab and write report.md and report.html",
        description="The lab in order: the custom-dense classifier, the VAE with KL/784, the "
                    "same without /784 (mode collapse), and KL annealing with and without /784.")
    add_out(lab, "folder for the runs and reports", default_text="runs/lab")
    add_quick(lab, "a small subset and few epochs: the same pipeline in about a minute")
    add_runs_of_many(lab, "lab", "train every VAE experiment with seeds 0 … N-1; the report "
                                 "gives mean ± std and verdicts only where all seeds agree "
                                 "(default 1)")
    lab.set_defaults(func="lab")

    ablate = commands.add_parser(
        "ablate", help="which methods keep the unscaled VAE (KL × 1) from collapsing",
        description="Trains the lab's VAE with the KL unscaled for 20 epochs under each method "
                    "(nothing, cyclical annealing, free bits, beta < 1, and the lab's 1/784 as "
                    "reference) with several seeds; writes report.md, report.html and "
                    "ablation.png.")
    add_out(ablate, "folder for the runs and the report", default_text="runs/ablate")
    add_quick(ablate, "a small subset and 5 epochs: the same pipeline in minutes")
    add_runs_of_many(ablate, "ablate", "seeds 0 … N-1 for every method (default 3)")
    ablate.set_defaults(func="ablate")
